"""Decode + validate one consumed message, or dead-letter it: the errors-are-data step.

Every agent starts with this, so the rule "a bad message never stops a stream" lives in one
place: Avro/framing failures keep their DecodeError reason, domain failures become
invalid_field, anything unexpected becomes processing_error with the exception text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from app.contracts.codec import DecodeError, Serde
from app.contracts.validate import ValidationError
from app.kafka.deadletter import DeadLetterSink

log = logging.getLogger(__name__)


async def decode_or_dead_letter(
    msg: Any, serde: Serde, validate: Callable[[dict[str, Any]], None], dlq: DeadLetterSink
) -> dict[str, Any] | None:
    """The valid record, or None after the message was dead-lettered."""
    try:
        rec = serde.decode(msg.value)
        validate(rec)
        return rec
    except DecodeError as exc:
        await dlq.send(msg, exc.reason, exc.detail)
    except ValidationError as exc:
        await dlq.send(msg, "invalid_field", str(exc))
    except Exception as exc:  # a decoder bug must not stop the agent either
        log.exception("decoding %s/%s/%s failed", msg.topic, msg.partition, msg.offset)
        await dlq.send(msg, "processing_error", f"{type(exc).__name__}: {exc}")
    return None


async def processing_failed(msg: Any, exc: Exception, dlq: DeadLetterSink) -> None:
    """Dead-letter a message whose processing raised after it decoded."""
    log.exception("processing %s/%s/%s failed", msg.topic, msg.partition, msg.offset)
    await dlq.send(msg, "processing_error", f"{type(exc).__name__}: {exc}")

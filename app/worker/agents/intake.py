"""The errors-are-data loop every agent runs: decode or dead-letter, handle, or dead-letter.

The rule "a bad message never stops a stream" lives here once: Avro/framing failures keep their
DecodeError reason, domain failures become invalid_field, anything unexpected while decoding or
handling becomes processing_error with the exception text. An exception that escaped an agent
would stop it while the worker stays up, its partition never committed again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from faust.types import AppT, EventT, Message, StreamT, TopicT
from prometheus_client import Counter

from app.contracts.codec import DecodeError, Serde
from app.contracts.validate import ValidationError
from app.kafka.deadletter import DeadLetterSink
from app.kafka.offsets import OffsetGuard

log = logging.getLogger(__name__)

T = TypeVar("T")


def validated(
    serde: Serde, validate: Callable[[dict[str, Any]], None]
) -> Callable[[bytes], dict[str, Any]]:
    """A decoder for guarded_agent: Avro-decode, then the domain checks."""

    def decode(value: bytes) -> dict[str, Any]:
        rec = serde.decode(value)
        validate(rec)
        return rec

    return decode


async def decode_or_dead_letter(
    msg: Message, decode: Callable[[bytes], T], dlq: DeadLetterSink
) -> T | None:
    """The decoded record, or None after the message was dead-lettered."""
    if msg.value is None:  # a tombstone: every authpilot topic carries Avro values
        await dlq.send(msg, "undecodable", "no value (a tombstone)")
        return None
    try:
        return decode(msg.value)
    except DecodeError as exc:
        await dlq.send(msg, exc.reason, exc.detail)
    except ValidationError as exc:
        await dlq.send(msg, "invalid_field", str(exc))
    except Exception as exc:  # a decoder bug must not stop the agent either
        log.exception("decoding %s/%s/%s failed", msg.topic, msg.partition, msg.offset)
        await dlq.send(msg, "processing_error", f"{type(exc).__name__}: {exc}")
    return None


async def processing_failed(msg: Message, exc: Exception, dlq: DeadLetterSink) -> None:
    """Dead-letter a message whose processing raised after it decoded."""
    log.exception("processing %s/%s/%s failed", msg.topic, msg.partition, msg.offset)
    await dlq.send(msg, "processing_error", f"{type(exc).__name__}: {exc}")


def guarded_agent(
    app: AppT,
    topic: TopicT,
    name: str,
    decode: Callable[[bytes], T],
    handle: Callable[[Message, T, float], Awaitable[None]],
    dlq: DeadLetterSink,
    events_in: Counter,
    offsets: OffsetGuard,
) -> Any:
    """Register an agent that runs `handle(message, record, started)` for every message of
    `topic` that decodes (started: perf_counter when the event arrived, decode included),
    dead-letters the rest and every message whose handling raised, and goes on. `offsets`
    (app.kafka.offsets) holds back a record read past a hole in the offsets and learns which
    records are finished: only those offsets are committed.

    Per event, not take_events(): measured on this machine, Faust's batching timers added
    latency (p50 produce->decided 11.6 ms vs 6.4 ms at 200 req/s) and lowered throughput."""

    admit, done = offsets.admit, offsets.done

    async def agent(stream: StreamT[bytes]) -> None:
        event: EventT[bytes]
        async for event in stream.events():
            started = time.perf_counter()
            msg = event.message
            if not admit(msg.tp, msg.offset):
                continue
            events_in.inc()
            rec = await decode_or_dead_letter(msg, decode, dlq)
            if rec is not None:
                try:
                    await handle(msg, rec, started)
                except Exception as exc:  # never let one event stop the agent
                    await processing_failed(msg, exc, dlq)
            done(msg.tp, msg.offset)

    return app.agent(topic, name=name)(agent)

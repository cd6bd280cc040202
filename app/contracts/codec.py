"""Avro in the Confluent wire format: byte 0 = 0x00, bytes 1-4 = big-endian schema id, Avro body.

Schema ids come from schemas/registry.json (the embedded default, no server to run) or from a
Confluent-compatible registry when AUTHPILOT_SCHEMA_REGISTRY_URL is set. Decoding resolves the
writer's schema by id against our reader schema, so producers on an older compatible schema
keep working. Every failure is a DecodeError with a machine-readable reason: the caller
dead-letters the message instead of crashing.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import fastavro

from app.config import Settings

MAGIC = 0
_HEADER = struct.Struct(">bI")
NAMESPACE = "io.authpilot"


class DecodeError(ValueError):
    """A message that cannot become a record; `reason` is the dead-letter reason label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_record_schema(text: str, where: str) -> dict[str, Any]:
    """Parse Avro schema JSON into a fastavro schema (named types registered locally).

    Every authpilot subject is a record; fastavro also accepts primitive (str) and union (list)
    schemas, which no Serde can encode or decode, so those are refused here.
    """
    parsed = fastavro.parse_schema(json.loads(text), named_schemas={})
    if not isinstance(parsed, dict):
        raise ValueError(f"{where}: not an Avro record schema")
    return parsed


def load_schema_file(path: Path) -> dict[str, Any]:
    """Parse an .avsc file into a fastavro record schema."""
    return parse_record_schema(path.read_text(), str(path))


class Registry(Protocol):
    """Where schema ids come from."""

    def id_for(self, subject: str) -> int: ...

    def schema_for(self, schema_id: int) -> dict[str, Any] | None: ...


class LocalRegistry:
    """schemas/registry.json: subject -> list of {id, file}; the newest entry is written."""

    def __init__(self, schema_dir: Path) -> None:
        spec = json.loads((schema_dir / "registry.json").read_text())
        self._latest: dict[str, int] = {}
        self._by_id: dict[int, dict[str, Any]] = {}
        for subject, versions in spec["subjects"].items():
            for v in versions:
                self._by_id[int(v["id"])] = load_schema_file(schema_dir / v["file"])
            self._latest[subject] = int(versions[-1]["id"])

    def id_for(self, subject: str) -> int:
        return self._latest[subject]

    def schema_for(self, schema_id: int) -> dict[str, Any] | None:
        return self._by_id.get(schema_id)


class RemoteRegistry:
    """A Confluent-compatible schema registry; subjects follow the record-name strategy."""

    def __init__(self, url: str, schema_dir: Path, user_info: str | None = None) -> None:
        from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

        conf = {"url": url}
        if user_info:
            conf["basic.auth.user.info"] = user_info
        self._client = SchemaRegistryClient(conf)
        self._schema_cls = Schema
        self._schema_dir = schema_dir
        self._ids: dict[str, int] = {}
        self._by_id: dict[int, dict[str, Any] | None] = {}

    def id_for(self, subject: str) -> int:
        if subject not in self._ids:
            text = (self._schema_dir / f"{subject}.avsc").read_text()
            schema_id = self._client.register_schema(
                f"{NAMESPACE}.{subject}", self._schema_cls(text, "AVRO")
            )
            self._ids[subject] = schema_id
        return self._ids[subject]

    def schema_for(self, schema_id: int) -> dict[str, Any] | None:
        if schema_id not in self._by_id:
            try:
                s = self._client.get_schema(schema_id)
                if s.schema_str is None:
                    raise ValueError(f"schema id {schema_id}: registry returned no schema text")
                parsed: dict[str, Any] | None = parse_record_schema(
                    s.schema_str, f"schema id {schema_id}"
                )
            except Exception:
                parsed = None  # unknown id: cached so a flood of bad ids costs one lookup
            self._by_id[schema_id] = parsed
        return self._by_id[schema_id]


@dataclass
class Serde:
    """Encoder/decoder of one record type (one subject). Reuses its buffer: not thread-safe."""

    subject: str
    schema: dict[str, Any]
    schema_id: int
    registry: Registry

    def __post_init__(self) -> None:
        self._header = _HEADER.pack(MAGIC, self.schema_id)
        self._buf = io.BytesIO()
        self._writers: dict[int, dict[str, Any] | None] = {self.schema_id: None}
        self._name = self.schema["name"]

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        buf.write(self._header)
        fastavro.schemaless_writer(buf, self.schema, record)
        return buf.getvalue()

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if not data or len(data) < 5:
            raise DecodeError("undecodable", f"{len(data or b'')} bytes: shorter than a header")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError("undecodable", f"magic byte {magic}, expected 0 (Confluent framing)")
        if schema_id not in self._writers:
            writer = self.registry.schema_for(schema_id)
            if writer is None:
                raise DecodeError("unknown_schema_id", f"schema id {schema_id} is not registered")
            if writer.get("name") != self._name:
                raise DecodeError(
                    "wrong_schema",
                    f"schema id {schema_id} is {writer.get('name')}, this topic carries "
                    f"{self._name}",
                )
            self._writers[schema_id] = writer
        writer = self._writers[schema_id]
        try:
            stream = io.BytesIO(memoryview(data)[5:])
            if writer is None:
                rec = fastavro.schemaless_reader(stream, self.schema, None)
            else:
                rec = fastavro.schemaless_reader(stream, writer, self.schema)
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ...
            raise DecodeError("undecodable", f"Avro body: {type(exc).__name__}: {exc}") from exc
        if stream.tell() != len(data) - 5:
            raise DecodeError("undecodable", f"{len(data) - 5 - stream.tell()} trailing bytes")
        # fastavro types a read as any Avro value; a record schema always reads a dict
        return rec  # type: ignore[return-value]


class Codec:
    """All serdes of the process, built once from the settings."""

    def __init__(self, settings: Settings) -> None:
        schema_dir = settings.schema_dir
        self.registry: Registry = (
            RemoteRegistry(
                settings.schema_registry_url, schema_dir, settings.schema_registry_user_info
            )
            if settings.schema_registry_url
            else LocalRegistry(schema_dir)
        )
        self._schema_dir = schema_dir
        self._serdes: dict[str, Serde] = {}

    def serde(self, subject: str) -> Serde:
        """A fresh-or-cached serde for a subject (cached: one per process and subject)."""
        if subject not in self._serdes:
            schema = load_schema_file(self._schema_dir / f"{subject}.avsc")
            self._serdes[subject] = Serde(
                subject, schema, self.registry.id_for(subject), self.registry
            )
        return self._serdes[subject]

    @property
    def request(self) -> Serde:
        return self.serde("AuthorizationRequest")

    @property
    def outcome(self) -> Serde:
        return self.serde("AuthorizationOutcome")

    @property
    def decision(self) -> Serde:
        return self.serde("RoutingDecision")

    @property
    def retry(self) -> Serde:
        return self.serde("RetryDecision")

    @property
    def dead_letter(self) -> Serde:
        return self.serde("DeadLetter")

"""Input bounds the worker applies before a record touches state: event time, key, size.

Pure functions and one small clock object; the intake loop (app.worker.agents.intake) calls
them and dead-letters what they refuse (ValidationError -> invalid_field, size -> oversized).

**Event time.** Every ring, the dedupe window and the last-decline record are indexed by
event_time, so one record dated far ahead would claim ring slots that every later record then
lands behind (measured before these bounds: an outcome dated 100 years ahead emptied the time
windows and later outcomes were dropped as older than the window). A record further ahead of
or behind the worker's clock than AUTHPILOT_EVENT_TIME_MAX_AHEAD_S / _MAX_BEHIND_S is refused.
The clock is either

- `wall`: the worker's wall clock (production: gateways stamp requests and outcomes with an
  NTP-synchronised clock, so a few minutes ahead is already a broken clock), or
- `stream`: the newest event time this worker accepted on the partition, moved on by the wall
  time since that record was produced (its Kafka timestamp) x AUTHPILOT_EVENT_TIME_STREAM_SPEED
  (the simulator's speedup): for the simulator harnesses, whose event times are far from the
  wall clock and run 60x faster. Measured from when the record was produced, not processed,
  so a worker lagging its producer (a stall, a catch-up) does not refuse what the producer's
  clock legitimately reached meanwhile (measured: 6 min ahead at 60x after a 6 s stall). The first
  record of a stream is only held to the plausible epoch range (2000-2100); after that a single
  outlier cannot move the clock further than the bound. If AUTHPILOT_EVENT_TIME_STREAM_RESYNC
  records in a row are refused and agree with one another, the clock re-anchors on them (the
  first record was the outlier, or a simulation was restarted from its start against a running
  worker).

Why the bound is enough for the rings (app.state.windows.time): an accepted record is at most
`ahead` past the clock; with the default 300 s, no more than the narrowest bucket (the 1 h
window's 5 min), it lands at most in the next bucket, which it would share with any record
stamped up to 5 minutes later: it can retire a window's oldest bucket at most 5 minutes early
and never holds a slot past the time real records reach it, so no outlier the bound admits
blocks or erases history (tests/unit/contracts/test_bounds.py).

**Key.** Requests and outcomes are partitioned by card: the key must be the card_fingerprint.
An outcome with another key (or none) sits on a partition that does not own the card: applying
it would write the card's windows where its requests are never scored, and they would be missing
where they are. A request with another key would be scored from another partition's card state:
a decision that looks right and is not. Both are producer bugs, refused loudly (invalid_field,
field `key`) rather than answered from the wrong state.

**Size.** A message's key + value + headers over AUTHPILOT_MAX_INPUT_BYTES is refused before
decoding (reason `oversized`): the field bounds (app.contracts.validate) keep a valid request
under 20 KB (19.5 KB measured with every string at its bound), so every decision and dead
letter the worker builds stays far under the producer's 1 MB limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from app.contracts.validate import ValidationError
from app.contracts.vocab import EPOCH_MS_MAX, EPOCH_MS_MIN

ClockName = Literal["wall", "stream"]


def _span(ms: int) -> str:
    """A duration as a person reads it: 1.5 s, 12.0 min, 3.2 h, 36500.0 days."""
    s = abs(ms) / 1000
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _when(t: int) -> str:
    if EPOCH_MS_MIN <= t < EPOCH_MS_MAX:
        return f"{t} ({datetime.fromtimestamp(t / 1000, tz=UTC):%Y-%m-%dT%H:%M:%SZ})"
    return str(t)


def check_event_time(t: int, low: int, high: int, clock: str, ref: int) -> None:
    """Raise ValidationError(event_time) unless low <= t <= high; the detail says by how much
    and against which clock."""
    if t > high:
        raise ValidationError(
            "event_time",
            f"{_when(t)} is {_span(t - ref)} ahead of the {clock} clock {_when(ref)} "
            f"(at most {_span(high - ref)} allowed)",
        )
    if t < low:
        raise ValidationError(
            "event_time",
            f"{_when(t)} is {_span(ref - t)} behind the {clock} clock {_when(ref)} "
            f"(at most {_span(ref - low)} allowed)",
        )


def wall_ms() -> int:
    return int(time.time() * 1000)


class EventClock:
    """The reference an event_time is held to (see the module docstring); one per input
    partition of a worker. `admit(t)` raises ValidationError for a refused time and advances
    the clock on an accepted one. `now` is injectable for tests."""

    def __init__(self, clock: ClockName, ahead_ms: int, behind_ms: int, *,
                 speed: float = 60.0, resync: int = 32, now: Any = wall_ms) -> None:  # fmt: skip
        if clock not in ("wall", "stream"):
            raise ValueError(f"unknown event-time clock {clock!r}")
        self.clock = clock
        self.ahead = ahead_ms
        self.behind = behind_ms
        self.speed = speed
        self.resync = resync
        self._now = now
        self.newest: int | None = None  # stream: newest accepted event time
        self._at = 0  # stream: wall ms when the `newest` record was produced
        self._run = 0  # stream: refused records in a row that agree with one another
        self._run_newest = 0
        self._run_at = 0

    def bounds(self, now: int) -> tuple[int, int, int]:
        """(low, high, reference) event times accepted at wall time `now`."""
        if self.clock == "wall":
            return now - self.behind, now + self.ahead, now
        if self.newest is None:
            return EPOCH_MS_MIN, EPOCH_MS_MAX - 1, EPOCH_MS_MIN
        moved = int(max(0, now - self._at) * self.speed)
        return self.newest - self.behind, self.newest + moved + self.ahead, self.newest + moved

    def admit(self, t: int, produced_ms: int | None = None) -> None:
        """produced_ms: the record's Kafka timestamp (None: unknown, taken as now)."""
        now = self._now()
        low, high, ref = self.bounds(now)
        try:
            if not EPOCH_MS_MIN <= t < EPOCH_MS_MAX:
                raise ValidationError(
                    "event_time", f"{t} is not epoch milliseconds in [2000-01-01, 2100-01-01)"
                )
            check_event_time(t, low, high, self.clock, ref)
        except ValidationError:
            plausible = EPOCH_MS_MIN <= t < EPOCH_MS_MAX
            if self.clock == "stream" and plausible and self._resynced(t, now):
                return
            raise
        self._run = 0
        if self.clock == "stream" and (self.newest is None or t > self.newest):
            at = now if produced_ms is None or produced_ms <= 0 else min(produced_ms, now)
            self.newest, self._at = t, at

    def _resynced(self, t: int, now: int) -> bool:
        """Count a refused time towards a re-anchor; True when this one completes it."""
        if self._run:
            moved = int(max(0, now - self._run_at) * self.speed)
            agrees = self._run_newest - self.behind <= t <= self._run_newest + moved + self.ahead
        else:
            agrees = False
        if agrees:
            self._run += 1
            if t > self._run_newest:
                self._run_newest, self._run_at = t, now
        else:
            self._run, self._run_newest, self._run_at = 1, t, now
        if self._run < self.resync:
            return False
        self.newest, self._at, self._run = self._run_newest, self._run_at, 0
        return True


def check_key(key: bytes | None, card: str) -> None:
    """Raise ValidationError(key) unless the message key is the record's card_fingerprint."""
    if key is None:
        raise ValidationError(
            "key", "null key: requests and outcomes are keyed by card_fingerprint"
        )
    if key != card.encode():
        shown = key[:40] + (b"..." if len(key) > 40 else b"")
        raise ValidationError(
            "key", f"key {shown!r} is not the card_fingerprint {card[:40]!r}: the record is on "
            "a partition that does not own the card",
        )  # fmt: skip


def header_bytes(headers: Any) -> int:
    """Bytes of a message's headers as the broker counts them (keys UTF-8, values; a null
    value is 0 bytes)."""
    if not headers:
        return 0
    items: Iterable[Any] = headers.items() if isinstance(headers, dict) else headers
    total = 0
    for k, v in items:
        total += len(k.encode() if isinstance(k, str) else bytes(k))
        total += 0 if v is None else len(v if isinstance(v, bytes | bytearray) else str(v))
    return total


def message_bytes(key: bytes | None, value: bytes | None, headers: Any) -> int:
    """Key + value + header bytes of one message: what AUTHPILOT_MAX_INPUT_BYTES bounds."""
    return len(key or b"") + len(value or b"") + header_bytes(headers)

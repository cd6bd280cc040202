"""The ring interface every windowed statistic implements, and the store it is kept in.

A ring is one bytes value per key (one table write per key per update, one changelog message),
so the codec is pure: it turns (old value, one event) into the new value and reads totals out of
a value. Two codecs sit behind it: `count.CountRing` (the last B outcomes, for success-rate
routing) and `time.TimeRing` (time buckets of metric sums, for features).
"""

from __future__ import annotations

from typing import Protocol, TypeVar

E_contra = TypeVar("E_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


class Ring(Protocol[E_contra, R_co]):
    """A windowed statistic packed into one bytes value; `None` is a key never updated."""

    def empty(self) -> bytes:
        """The value of a key with no events: update_one(empty(), e) == update_one(None, e)."""
        ...

    def update_one(self, value: bytes | None, event: E_contra) -> bytes:
        """The value after one more event (the input is never modified)."""
        ...

    def read_one(self, value: bytes | None, at_ms: int) -> R_co:
        """The window's totals as seen at time at_ms (a count window has no clock)."""
        ...

    def young(self, value: bytes) -> bool:
        """Whether readers should see every update of this key: its estimate still moves fast."""
        ...


class Store(Protocol):
    """Where ring values live: a dict (evaluator, tests), a Faust table, an `OwnedState`."""

    def get(self, key: bytes, /) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes, /) -> None: ...

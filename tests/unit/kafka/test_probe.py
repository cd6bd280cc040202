"""The readiness probe answers for now, not for the timer's last tick."""

import asyncio
import socket
import time

from app.config import Settings
from app.kafka.probe import FRESH_S, BrokerProbe


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Counting(BrokerProbe):
    """The real probe, counting its round trips."""

    calls = 0

    def check(self, timeout_s: float = 1.0) -> bool:
        type(self).calls += 1
        return super().check(timeout_s)


def test_a_stale_answer_is_not_read_a_fresh_round_trip_is_made():
    probe = Counting(Settings(kafka_bootstrap=f"127.0.0.1:{closed_port()}"))
    # What the timer last said before the broker went away: reachable, a second ago.
    probe.reachable, probe.checked_at = True, time.monotonic() - 1.0

    async def polls() -> list[bool]:
        return list(await asyncio.gather(*(probe.fresh() for _ in range(5))))

    t0 = time.monotonic()
    assert asyncio.run(polls()) == [False] * 5
    assert time.monotonic() - t0 < 0.9  # FRESH_TIMEOUT_S, inside a 1 s probe timeout
    assert Counting.calls == 1  # five concurrent polls, one metadata request
    assert probe.error  # the body names why
    # A stale "unreachable" is kept (the timer turns it): no round trip for a poll.
    probe.checked_at = time.monotonic() - 5.0
    assert asyncio.run(probe.fresh()) is False
    assert Counting.calls == 1
    # Within FRESH_S an answer just made is reused: no second request.
    probe.reachable, probe.checked_at = True, time.monotonic()  # as if it had just answered
    assert asyncio.run(probe.fresh()) is True
    assert Counting.calls == 1
    # Older than FRESH_S, it is asked again (and the closed port says no).
    probe.checked_at = time.monotonic() - 2 * FRESH_S
    assert asyncio.run(probe.fresh()) is False
    assert Counting.calls == 2

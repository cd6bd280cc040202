"""Log storms during a broker outage become one line per message kind per interval.

aiokafka reconnects on its own, logging every attempt at ERROR: measured with the broker
SIGKILLed for 23 s, 2,212 lines (3,253 "Unable connect to node", 1,552 "Unable to update
metadata", ~850 each of failed fetches and coordinator lookups over a longer run); the issue's
harness counted ~56,000 in 23 s. Those lines bury the one that matters and cost CPU when the
worker most needs it. `RepeatFilter` lets the first record of each (logger, level, message
template) through, drops repeats for `window_s`, and then lets one through with the count it
dropped.
"""

from __future__ import annotations

import logging
import time

# One line per kind every 10 s: enough to see an outage is still going on.
WINDOW_S = 10.0


class RepeatFilter(logging.Filter):
    def __init__(self, window_s: float = WINDOW_S) -> None:
        super().__init__()
        self.window_s = window_s
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # librdkafka logs through one "%s" template: key it by the text (it carries no time)
        text = record.getMessage() if record.name == "librdkafka" else str(record.msg)
        key = (record.name, record.levelno, text)
        now = time.monotonic()
        seen = self._last.get(key)
        if seen is not None and now - seen[0] < self.window_s:
            self._last[key] = (seen[0], seen[1] + 1)
            return False
        dropped = seen[1] if seen is not None else 0
        self._last[key] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} [{dropped} more like this in {self.window_s:.0f} s]"
        return True


def quiet_repeats(
    prefixes: tuple[str, ...] = ("aiokafka", "faust.transport", "librdkafka"),
) -> RepeatFilter:
    """Attach one RepeatFilter to every logger created so far under `prefixes` (records are
    filtered by the logger that creates them; call after the clients are imported)."""
    f = RepeatFilter()
    names = [n for n in logging.Logger.manager.loggerDict if n.startswith(prefixes)]
    for name in {*prefixes, *names}:
        logging.getLogger(name).addFilter(f)
    return f

"""State equal to a straight replay: the worker's feature rows against a reference.

The reference pushes every valid outcome once (first copy per request_id, event-time order,
app.state.backfill.replay.replay_order) through the worker's own FeatureState into dicts, and
fills the row of a probe request per sampled card; the worker fills the same probe from its
tables (POST /debug/features). Card features come from the card's partition, the route/BIN/
merchant ones from the owners' state, so over-counting on either side after replays, or a
window wiped by an accepted outlier, shows up as a differing row. Time-window features do not
depend on the order outcomes arrived in (a ring slot keeps its newest bucket), so equality is
exact. Only meaningful against a worker that owns every partition (one worker).
"""

from __future__ import annotations

import json
import math
import random
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.features.definitions import FEATURE_NAMES, OWNERS
from app.features.online import FeatureState, new_buffer
from app.state.backfill.replay import replay_order

Row = list[float | None]


def reference_state(outcomes: Iterable[dict[str, Any]]) -> FeatureState:
    """A FeatureState over dicts after each outcome once, in event-time order."""
    card: dict[bytes, bytes] = {}
    owned: dict[bytes, bytes] = {}
    stores = {o: card if o == "card" else owned for o in OWNERS}
    fs = FeatureState(stores)
    for o in replay_order(list(outcomes)):
        for owner in OWNERS:
            fs.update_outcome(o, owner)
    return FeatureState({"card": card, "route": owned, "bin": owned, "merchant": owned})


def probes(
    requests_by_card: Mapping[str, dict[str, Any]], cards: Sequence[str], at_ms: int
) -> list[dict[str, Any]]:
    """One probe per card: its last request, re-timed to `at_ms`, with a probe id."""
    return [dict(requests_by_card[c], request_id=f"chaos-probe-{c}", event_time=at_ms)
            for c in cards if c in requests_by_card]  # fmt: skip


def sample_cards(cards: Iterable[str], n: int, rng: random.Random,
                 always: Iterable[str] = ()) -> list[str]:  # fmt: skip
    """`n` cards at random plus every card in `always` (the ones injected outcomes touched)."""
    pool = sorted(set(cards))
    pick = set(rng.sample(pool, min(n, len(pool)))) | (set(always) & set(pool))
    return sorted(pick)


def reference_rows(fs: FeatureState, probe_reqs: Sequence[dict[str, Any]]) -> dict[str, list[Row]]:
    buf = new_buffer(64)
    out: dict[str, list[Row]] = {}
    for p in probe_reqs:
        rows = fs.fill(p, buf)
        out[p["request_id"]] = [[None if v != v else float(v) for v in row] for row in rows]
    return out


def worker_rows(port: int, probe_reqs: Sequence[dict[str, Any]],
                timeout: float = 30) -> dict[str, list[Row]]:  # fmt: skip
    """The worker's rows for the probes (POST /debug/features), in batches of 200."""
    out: dict[str, list[Row]] = {}
    for i in range(0, len(probe_reqs), 200):
        body = json.dumps(list(probe_reqs[i : i + 200])).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/debug/features", data=body,
                                     headers={"Content-Type": "application/json"},
                                     method="POST")  # fmt: skip
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            out.update(json.loads(resp.read())["rows"])
    return out


@dataclass
class StateCheck:
    cards: int = 0
    mismatching: int = 0
    features: dict[str, int] = field(default_factory=dict)  # feature -> cards it differed on
    count_ratio: float | None = None  # sum of the worker's *_n features / the reference's
    examples: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.cards > 0 and self.mismatching == 0


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def compare(worker: Mapping[str, Sequence[Row]], reference: Mapping[str, Sequence[Row]],
            names: Sequence[str] = FEATURE_NAMES) -> StateCheck:  # fmt: skip
    """Cards whose probe rows differ anywhere, which features, and how counts compare."""
    out = StateCheck(cards=len(reference))
    feats: Counter[str] = Counter()
    counts = [i for i, n in enumerate(names) if n.endswith("_n")]
    w_sum = r_sum = 0.0
    for pid, ref in reference.items():
        got = worker.get(pid)
        if got is None or len(got) != len(ref):
            out.mismatching += 1
            feats["<row missing>"] += 1
            continue
        bad: set[str] = set()
        for wr, rr in zip(got, ref, strict=True):
            for i, (a, b) in enumerate(zip(wr, rr, strict=True)):
                if not _same(a, b):
                    bad.add(names[i])
            w_sum += sum(wr[i] or 0.0 for i in counts)
            r_sum += sum(rr[i] or 0.0 for i in counts)
        if bad:
            out.mismatching += 1
            feats.update(bad)
            if len(out.examples) < 3:
                idx = [names.index(n) for n in sorted(bad)][:6]
                out.examples.append({"probe": pid, **{names[i]: [got[0][i], ref[0][i]]
                                                      for i in idx}})  # fmt: skip
    out.features = dict(feats.most_common())
    out.count_ratio = w_sum / r_sum if r_sum else None
    return out

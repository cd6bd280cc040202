"""A worker warmed by backfill decides from the state a straight replay builds, and the load
emits nothing downstream (issue 14 items 5 and 7)."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pyarrow.parquet as pq
import pytest

from app.contracts.codec import Codec
from app.features.online import FeatureState, new_buffer
from app.harness.sample import write_sample_log
from app.kafka.topics import ensure_topics
from app.state.backfill import compute, load, read_outcomes
from app.state.backfill.load import LoadError
from app.state.backfill.replay import replay, replay_order
from app.state.windows.count import CountRing, stat_keys
from tests.conftest import WorkerProcess, wait_until
from tests.kafka_io import partition_ends, produce, topic_end

pytestmark = pytest.mark.kafka


def _debug(port: int, probes: list[dict]) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/debug/features", data=json.dumps(probes).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_a_backfilled_worker_sees_the_replayed_state_and_nothing_is_emitted(
    worker_env, settings_for, tmp_path
):
    s = settings_for
    codec = Codec(s)
    log = write_sample_log(tmp_path / "log", n=1500, seed=21)
    outs = pq.read_table(log / "outcomes.parquet").to_pylist()
    reqs = pq.read_table(log / "requests.parquet").to_pylist()
    ensure_topics(s)
    # the history is also retained in the outcomes topic: the log includes it ("end")
    produce(s, s.topic_outcomes, [(o["card_fingerprint"], codec.outcome.encode(o)) for o in outs])
    state = compute(read_outcomes(log), s.sr_window)
    report = load(state, s, "end")
    assert report.marks == [n - 1 for n in partition_ends(s, s.topic_outcomes)]
    assert max(report.marks) >= 0  # the retained outcomes really are there
    assert sum(report.records.values()) > len(state.features)
    with pytest.raises(LoadError, match="already holds"):
        load(state, s, "end")  # a deployment with state is refused

    w = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    try:
        straight = replay(replay_order(outs), s.sr_window)
        reader = FeatureState({o: straight.card if o == "card" else straight.features
                               for o in ("card", "route", "bin", "merchant")})  # fmt: skip
        t_probe = max(o["event_time"] for o in outs) + 1
        probes = [dict(r, request_id=f"probe-{i}", event_time=t_probe)
                  for i, r in enumerate(reqs[::7])]  # fmt: skip
        buf = new_buffer()
        want = {p["request_id"]: reader.fill(p, buf).copy() for p in probes}
        body: dict = {}

        def equal() -> bool:
            body.update(_debug(w.port, probes))
            got = {k: np.array(v, dtype=float) for k, v in body["rows"].items()}
            return all(np.array_equal(got[k], want[k], equal_nan=True) for k in want)

        assert wait_until(equal, 90, interval=1.0), w.log_tail()
        ring = CountRing(s.sr_window)
        for p in probes:  # the router reads the same success-rate snapshots
            for c in p["candidates"]:
                keys = stat_keys(c["route_id"], p["bin"], p["network"], p["issuer_country"])
                snaps = [straight.route_stats.get(k.encode()) for k in keys]
                expect = [None if v is None else list(ring.read_one(v)) for v in snaps]
                assert body["success_rates"][p["request_id"]][c["route_id"]] == expect
        assert any(body["success_rates"][p["request_id"]] for p in probes)

        # the retained outcomes are not learned again, and nothing went downstream
        text = w.metrics()
        assert f'authpilot_events_in_total{{topic="{s.topic_outcomes}"}}' not in text or (
            f'authpilot_events_in_total{{topic="{s.topic_outcomes}"}} 0.0' in text
        )
        for t in (s.topic_decisions, s.topic_retry_decisions, s.topic_alerts):
            assert topic_end(s, t) == 0, t
    finally:
        w.stop()

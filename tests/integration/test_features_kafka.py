"""Feature state in the worker's RocksDB tables survives a stop mid-stream and a restart."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pyarrow.parquet as pq
import pytest

from app.contracts.codec import Codec
from app.features.definitions import FEATURE_NAMES, OWNERS
from app.features.online import FeatureState, new_buffer
from app.harness.sample import write_sample_log as make_log
from tests.conftest import WorkerProcess, wait_until
from tests.kafka_io import produce

pytestmark = pytest.mark.kafka


def _worker_rows(port: int, probes: list[dict]) -> dict[str, np.ndarray]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/debug/features",
        data=json.dumps(probes).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.loads(r.read())
    assert body["names"] == list(FEATURE_NAMES)
    return {k: np.array(v, dtype=float) for k, v in body["rows"].items()}


def test_table_state_after_a_restart_equals_a_straight_replay(worker, settings_for, tmp_path):
    s = settings_for
    codec = Codec(s)
    log = make_log(tmp_path / "log", n=1500, seed=21)
    outs = pq.read_table(log / "outcomes.parquet").to_pylist()
    reqs = pq.read_table(log / "requests.parquet").to_pylist()
    produce(s, s.topic_outcomes, [(o["card_fingerprint"], codec.outcome.encode(o)) for o in outs])

    def processed() -> int:
        for line in worker.metrics().splitlines():
            if line.startswith(f'authpilot_events_in_total{{topic="{s.topic_outcomes}"}}'):
                return int(float(line.split()[-1]))
        return 0

    assert wait_until(lambda: processed() >= len(outs) // 3, 60)
    assert worker.stop() == 0, worker.log_tail()  # stopped mid-stream
    restarted = WorkerProcess(worker.env, worker.log).start()
    worker.proc = restarted.proc  # stopped at teardown

    # the straight replay: every outcome once, through the same FeatureState code
    replay = FeatureState({o: {} for o in OWNERS})
    for o in sorted(outs, key=lambda o: o["event_time"]):
        for owner in OWNERS:
            replay.update_outcome(o, owner)
    t_probe = max(o["event_time"] for o in outs) + 1
    probes = [dict(r, request_id=f"probe-{i}", event_time=t_probe) for i, r in enumerate(reqs[::7])]
    buf = new_buffer()
    want = {p["request_id"]: replay.fill(p, buf).copy() for p in probes}

    got: dict = {}

    def equal() -> bool:
        got.update(_worker_rows(restarted.port, probes))
        return all(np.array_equal(got[k], want[k], equal_nan=True) for k in want)

    ok = wait_until(equal, 90, interval=1.0)
    if not ok:
        lines = []
        for k in want:
            bad = ~np.isclose(got[k], want[k], equal_nan=True)
            for i, j in zip(*np.nonzero(bad), strict=True):
                lines.append(f"{k} row {i} {FEATURE_NAMES[j]}: worker {got[k][i, j]} "
                             f"replay {want[k][i, j]}")  # fmt: skip
        pytest.fail(f"{len(lines)} feature mismatches after restart:\n" + "\n".join(lines[:30]))
    # and the state is not empty: the probes really see history
    card_n = FEATURE_NAMES.index("card_7d_n")
    assert sum(want[k][0, card_n] for k in want) > 0

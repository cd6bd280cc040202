"""Promotion and hot swap on the real broker: no request lost, versions switch, bad refused."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter

import pytest

from app.contracts.codec import Codec
from app.harness.sample import SampleTraffic
from app.models.serving.registry import promote
from tests.conftest import WorkerProcess, wait_until
from tests.kafka_io import produce, read_topic
from tests.modelkit import build_versions

pytestmark = pytest.mark.kafka


@pytest.fixture
def models_worker(worker_env, settings_for, tmp_path):
    from app.kafka.topics import ensure_topics

    root = build_versions(tmp_path)
    env = dict(worker_env, AUTHPILOT_MODEL_DIR=str(root))
    s = settings_for.model_copy(update={"model_dir": root})
    ensure_topics(s)
    w = WorkerProcess(env, tmp_path / "worker.log").start()
    yield w, s, root
    w.stop()


def test_hot_swap_under_traffic_then_refuse_a_corrupt_artifact(models_worker):
    w, s, root = models_worker
    codec = Codec(s)
    world = SampleTraffic(12)
    sent: list[str] = []
    stop = threading.Event()

    def traffic() -> None:  # ~100 requests/s until told to stop
        while not stop.is_set():
            batch = [world.next_request(int(time.time() * 1000)) for _ in range(10)]
            produce(s, s.topic_requests,
                    [(r["card_fingerprint"], codec.request.encode(r)) for r in batch])  # fmt: skip
            sent.extend(r["request_id"] for r in batch)
            time.sleep(0.1)

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    time.sleep(2)
    promote(s, "router", "v1", "champion")
    assert wait_until(lambda: w.metric('authpilot_model_info{name="router",role="champion",'
                                         'version="v1"}') == 1.0, 30), w.log_tail()  # fmt: skip
    time.sleep(2)
    promote(s, "router", "v2", "champion")
    assert wait_until(lambda: w.metric('authpilot_model_info{name="router",role="champion",'
                                         'version="v2"}') == 1.0, 30), w.log_tail()  # fmt: skip
    time.sleep(2)
    # a corrupt artifact: v3 is v2 with a flipped byte in the library
    shutil.copytree(root / "router" / "v2", root / "router" / "v3")
    lib = root / "router" / "v3" / "model.so"
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lib.write_bytes(bytes(data))
    promote(s, "router", "v3", "champion")
    assert wait_until(lambda: w.metric('authpilot_model_load_failures_total{reason="checksum"}')
                      == 1.0, 30), w.log_tail()  # fmt: skip
    time.sleep(2)
    stop.set()
    t.join(5)

    msgs = read_topic(s, s.topic_decisions, expect=len(sent), settle=3.0)
    decisions = [codec.decision.decode(m.value()) for m in msgs]
    counts = Counter(d["request_id"] for d in decisions)
    assert set(counts) == set(sent) and max(counts.values()) == 1, "lost or repeated decisions"
    order = [d["model_version"] for d in sorted(decisions, key=lambda d: d["decided_at"])]
    seen = [v for i, v in enumerate(order) if i == 0 or v != order[i - 1]]
    assert seen == [None, "router/v1", "router/v2"], seen
    assert order[-1] == "router/v2", "the refused v3 must not serve; v2 keeps serving"
    ev = [d for d in decisions if d["model_version"]]
    assert all(d["policy"] == "expected_value" for d in ev)
    assert all(0 < x["p_approve"] < 1 for d in ev for x in d["scores"])
    assert w.metric("authpilot_dead_letters_total") == 0.0
    assert "refused router/v3" in w.log_tail(20000)

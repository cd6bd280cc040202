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
    _swap_twice_then_refuse_a_corrupt_copy(w, s, root, "router", "champion", ("v1", "v2", "v3"))
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


def test_retry_model_hot_swap_under_declines_then_refuse_a_corrupt_one(worker_env, settings_for,
                                                                      tmp_path):  # fmt: skip
    """The retry model is promoted and swapped like the router: every decline gets exactly one
    RetryDecision, priced by the table until r1 is served, then r1, then r2; a corrupt r3 is
    refused while r2 keeps serving and the worker stays ready."""
    from app.kafka.topics import ensure_topics
    from tests.modelkit import build_retry_versions, retry_decline

    root = build_retry_versions(tmp_path)
    s = settings_for.model_copy(update={"model_dir": root})
    ensure_topics(s)
    w = WorkerProcess(dict(worker_env, AUTHPILOT_MODEL_DIR=str(root)),
                      tmp_path / "worker.log").start()  # fmt: skip
    codec = Codec(s)
    sent: list[str] = []
    stop = threading.Event()

    def declines() -> None:  # ~50 MIT soft declines/s until told to stop, one card each
        i = 0
        while not stop.is_set():
            now = int(time.time() * 1000)
            batch = [retry_decline(now, request_id=f"d{i + k}", payment_id=f"p{i + k}",
                                   card_fingerprint=f"card{i + k}") for k in range(5)]  # fmt: skip
            i += 5
            produce(s, s.topic_outcomes, [(str(o["card_fingerprint"]), codec.outcome.encode(o))
                                          for o in batch])  # fmt: skip
            sent.extend(str(o["request_id"]) for o in batch)
            time.sleep(0.1)

    try:
        t = threading.Thread(target=declines, daemon=True)
        t.start()
        time.sleep(2)
        _swap_twice_then_refuse_a_corrupt_copy(w, s, root, "retry", "retry", ("r1", "r2", "r3"))
        stop.set()
        t.join(5)
        ready = w.readiness()
        msgs = read_topic(s, s.topic_retry_decisions, expect=len(sent), settle=3.0)
    finally:
        stop.set()
        w.stop()
    retries = [codec.retry.decode(m.value()) for m in msgs]
    counts = Counter(d["request_id"] for d in retries)
    assert set(counts) == set(sent) and max(counts.values()) == 1, "lost or repeated retries"
    order = [d["model_version"] for d in sorted(retries, key=lambda d: d["decided_at"])]
    seen = [v for i, v in enumerate(order) if i == 0 or v != order[i - 1]]
    assert seen == [None, "retry/r1", "retry/r2"], seen
    for d in retries:  # the source of each price is named, and matches the version field
        source = "RECOVERY:MODEL" if d["model_version"] else "RECOVERY:TABLE"
        assert source in d["reason_codes"], d
    assert ready["checks"]["retry_model_served"] is True, ready  # r3 refused, r2 serves
    assert "refused retry/r3" in w.log_tail(20000)


def _swap_twice_then_refuse_a_corrupt_copy(w, s, root, name: str, role: str,
                                           versions: tuple[str, str, str]) -> None:  # fmt: skip
    """Promote versions[0], then versions[1], waiting until each serves; then promote
    versions[2], a copy of versions[1] with a flipped byte in its library, and wait for the
    checksum refusal. Two seconds of traffic between steps."""
    first, second, corrupt = versions

    def serving(v: str) -> bool:
        label = f'authpilot_model_info{{name="{name}",role="{role}",version="{v}"}}'
        return w.metric(label) == 1.0

    for v in (first, second):
        promote(s, name, v, role)
        assert wait_until(lambda v=v: serving(v), 30), w.log_tail()
        time.sleep(2)
    shutil.copytree(root / name / second, root / name / corrupt)
    lib = root / name / corrupt / "model.so"
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lib.write_bytes(bytes(data))
    promote(s, name, corrupt, role)
    assert wait_until(lambda: w.metric('authpilot_model_load_failures_total{reason="checksum"}')
                      == 1.0, 30), w.log_tail()  # fmt: skip
    time.sleep(2)

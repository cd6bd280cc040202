"""Experiment arms and shadow challengers on the real broker."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from app.contracts.codec import Codec
from app.experiments.assignment import arm_for
from app.harness.sample import SampleTraffic
from app.models.serving.registry import promote
from tests.conftest import WorkerProcess, wait_until
from tests.kafka_io import produce, read_topic
from tests.modelkit import build_versions

pytestmark = pytest.mark.kafka

ARMS = [{"name": "model", "pct": 45, "policy": "expected_value"},
        {"name": "sr", "pct": 45, "policy": "success_rate"}]  # fmt: skip
HOLDOUT = 10


@pytest.fixture
def arms_worker(worker_env, settings_for, tmp_path):
    from app.kafka.topics import ensure_topics

    root = build_versions(tmp_path)
    env = dict(worker_env, AUTHPILOT_MODEL_DIR=str(root),
               AUTHPILOT_EXPERIMENT_ARMS=json.dumps(ARMS),
               AUTHPILOT_EXPERIMENT_HOLDOUT_PCT=str(HOLDOUT))  # fmt: skip
    s = settings_for.model_copy(update={"model_dir": root})
    ensure_topics(s)
    w = WorkerProcess(env, tmp_path / "worker.log").start()
    yield w, s
    w.stop()


def test_arms_and_shadow_decisions_then_reports_from_kafka(arms_worker, worker_env,
                                                           monkeypatch, tmp_path):  # fmt: skip
    w, s = arms_worker
    promote(s, "router", "v1", "champion")
    promote(s, "router", "v2", "challenger")
    for version, role in (("v1", "champion"), ("v2", "challenger")):
        label = f'authpilot_model_info{{name="router",role="{role}",version="{version}"}}'
        assert wait_until(lambda label=label: w.metric(label) == 1.0, 30), w.log_tail()
    codec = Codec(s)
    world = SampleTraffic(31)
    reqs = [world.next_request(int(time.time() * 1000) + i) for i in range(300)]
    produce(s, s.topic_requests,
            [(r["card_fingerprint"], codec.request.encode(r)) for r in reqs])  # fmt: skip
    decisions = [codec.decision.decode(m.value())
                 for m in read_topic(s, s.topic_decisions, len(reqs))]  # fmt: skip
    shadows = [codec.decision.decode(m.value())
               for m in read_topic(s, s.topic_shadow, len(reqs))]  # fmt: skip
    assert sorted(d["request_id"] for d in decisions) == sorted(r["request_id"] for r in reqs)
    by_id = {r["request_id"]: r for r in reqs}
    arms = Counter()
    split = [(a["name"], a["pct"]) for a in ARMS]
    for d in decisions:
        arm = arm_for(by_id[d["request_id"]]["payment_id"], split, HOLDOUT)
        assert d["arm"] == arm
        arms[arm] += 1
        want = {"model": "expected_value", "sr": "success_rate",
                "holdout": "best_single_route"}[arm]  # fmt: skip
        assert d["policy"] == want, d
        if arm == "model":
            assert d["model_version"] == "router/v1"
    assert set(arms) == {"model", "sr", "holdout"}, arms
    # one shadow decision per request, from the challenger, on the same candidates
    assert sorted(x["request_id"] for x in shadows) == sorted(by_id)
    for x in shadows:
        assert x["arm"] == "shadow" and x["model_version"] == "router/v2"
        assert x["chosen_route"] in {c["route_id"] for c in by_id[x["request_id"]]["candidates"]}
    assert w.metric("authpilot_shadow_latency_seconds_count") == len(reqs)
    shadow_us = w.metric("authpilot_shadow_latency_seconds_sum") / len(reqs) * 1e6
    decide_us = (w.metric("authpilot_decision_latency_seconds_sum")
                 / w.metric("authpilot_decision_latency_seconds_count") * 1e6)  # fmt: skip
    print(f"shadow scoring adds {shadow_us:.0f} us per request (mean); "
          f"whole decision incl. produce {decide_us:.0f} us")  # fmt: skip
    assert 0 < shadow_us < decide_us

    # outcomes for every decided request; then both reports straight from the topics
    outs = [world.outcome(by_id[d["request_id"]], d["chosen_route"], d["decided_at"] + 150)
            for d in decisions]  # fmt: skip
    produce(s, s.topic_outcomes,
            [(o["card_fingerprint"], codec.outcome.encode(o)) for o in outs])  # fmt: skip
    for k, v in worker_env.items():
        if k.startswith("AUTHPILOT_TOPIC_"):
            monkeypatch.setenv(k, v)
    from app.cli.main import main as cli

    boot = s.kafka_bootstrap
    out = tmp_path / "experiment"
    rc = cli(["report", "experiment", "--bootstrap", boot, "--control", "sr", "--out", str(out),
                      "--idle-timeout", "20", "--quiet"])  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    got = {a: v["payments"] for a, v in summary["arms"].items()}
    assert got == dict(arms), (got, arms)  # every payment, in the arm the worker gave it
    assert summary["pending"] == 0 and summary["mixed_arm_payments"] == 0
    approved = {a: sum(o["approved"] for o, d in zip(outs, decisions, strict=True)
                       if d["arm"] == a) for a in arms}  # fmt: skip
    assert {a: v["approved_payments"] for a, v in summary["arms"].items()} == approved
    out = tmp_path / "shadow"
    rc = cli(["report", "shadow", "--bootstrap", boot, "--out", str(out), "--idle-timeout", "20",
                      "--quiet"])  # fmt: skip
    assert rc == 0
    md = (out / "report.md").read_text()
    assert "router/v2" in md and "SNIPS" in md

    # the worker answered every decline with a RetryDecision; the attempts the RETRY ones
    # scheduled come back (every other one approved) and `report retries` reads both topics
    declines = [o for o in outs if not o["approved"]]
    assert declines, "the sample world declines some first attempts"
    sent = [codec.retry.decode(m.value())
            for m in read_topic(s, s.topic_retry_decisions, len(declines))]  # fmt: skip
    assert sorted(d["request_id"] for d in sent) == sorted(o["request_id"] for o in declines)
    priced = [d for d in sent if d["action"] == "RETRY" and d["p_recover"] is not None]
    assert priced, "some declines are worth a retry"
    by_rid = {o["request_id"]: o for o in declines}
    answers = [dict(by_rid[d["request_id"]], request_id=f"{d['request_id']}-r",
                    attempt=d["attempt"] + 1, approved=i % 2 == 0, response_code="00"
                    if i % 2 == 0 else "05", event_time=int(time.time() * 1000))
               for i, d in enumerate(priced)]  # fmt: skip
    produce(s, s.topic_outcomes,
            [(o["card_fingerprint"], codec.outcome.encode(o)) for o in answers])  # fmt: skip
    # the worker answers the declined ones too: their RETRY decisions are pending in the report
    second = sum(not a["approved"] for a in answers)
    sent = [codec.retry.decode(m.value())
            for m in read_topic(s, s.topic_retry_decisions, len(declines) + second)]  # fmt: skip
    assert len(sent) == len(declines) + second
    later = [d for d in sent if d["attempt"] == 2 and d["action"] == "RETRY"
             and d["p_recover"] is not None]  # fmt: skip
    print(f"report retries from the topics: {len(declines)} declines, {len(priced)} RETRY with "
          f"a p answered, {len(later)} second retries pending")  # fmt: skip
    out = tmp_path / "retries"
    rc = cli(["report", "retries", "--bootstrap", boot, "--out", str(out), "--idle-timeout",
              "20", "--quiet"])  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["retries"], summary["pending"]) == (len(priced) + len(later), len(later))
    overall = summary["overall"][0]
    assert overall["answered"] == len(priced)
    assert overall["approved"] == pytest.approx(sum(a["approved"] for a in answers) / len(priced))
    assert overall["p_mean"] == pytest.approx(
        sum(d["p_recover"] for d in priced) / len(priced))  # fmt: skip
    assert (out / "reliability.png").stat().st_size > 5_000

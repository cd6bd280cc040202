"""Baseline policies run in the worker on the real broker: the oracle router and the fixed
retry schedule, decisions on their topics."""

from __future__ import annotations

import numpy as np
import pytest

from app.contracts.codec import Codec
from app.routing.oracle import oracle_decide
from app.sim import load_world
from app.sim.requests import sample_requests
from app.sim.truth import draw_outcome, p_approve
from tests.conftest import WorkerProcess
from tests.kafka_io import produce, read_topic

pytestmark = pytest.mark.kafka


@pytest.fixture
def baseline_worker(worker_env, settings_for, tmp_path):
    from app.kafka.topics import ensure_topics

    env = dict(worker_env, AUTHPILOT_ROUTING_POLICY="oracle", AUTHPILOT_ORACLE_SCENARIO="steady",
               AUTHPILOT_RETRY_POLICY="fixed_schedule")  # fmt: skip
    ensure_topics(settings_for)
    w = WorkerProcess(env, tmp_path / "worker.log").start()
    yield w, settings_for
    w.stop()


def test_oracle_routing_and_fixed_schedule_retries_in_the_worker(baseline_worker):
    w, s = baseline_worker
    world = load_world("steady")
    codec = Codec(s)
    rng = np.random.default_rng(17)
    reqs = sample_requests(world, world.start_ms + np.arange(200) * 600_000, rng, "pol")
    produce(s, s.topic_requests,
            [(r["card_fingerprint"], codec.request.encode(r)) for r in reqs])  # fmt: skip
    decisions = [codec.decision.decode(m.value())
                 for m in read_topic(s, s.topic_decisions, len(reqs))]  # fmt: skip
    assert len(decisions) == len(reqs)
    by_id = {r["request_id"]: r for r in reqs}
    for d in decisions:
        r = by_id[d["request_id"]]
        want = oracle_decide(r, [p_approve(world, r, c["route_id"]) for c in r["candidates"]],
                             s.ev_margin_bps)  # fmt: skip
        assert d["policy"] == "oracle" and d["chosen_route"] == want["chosen_route"]
    # declined outcomes: one fixed-schedule RetryDecision each
    outs = [draw_outcome(world, by_id[d["request_id"]], d["chosen_route"], rng=rng)
            for d in decisions]  # fmt: skip
    declined = [o for o in outs if not o["approved"]]
    assert declined
    produce(s, s.topic_outcomes,
            [(o["card_fingerprint"], codec.outcome.encode(o)) for o in outs])  # fmt: skip
    retries = [codec.retry.decode(m.value())
               for m in read_topic(s, s.topic_retry_decisions, len(declined))]  # fmt: skip
    assert sorted(x["request_id"] for x in retries) == sorted(o["request_id"] for o in declined)
    for x in retries:
        o = next(o for o in declined if o["request_id"] == x["request_id"])
        if o["initiator"] != "MIT":
            assert x["action"] == "STOP" and x["reason_codes"] == ["FIXED_NOT_DUNNED"]
        elif x["action"] == "RETRY":  # +1 day after the first decline (or an advised delay)
            assert x["not_before"] >= o["event_time"] + 24 * 3_600_000
            assert any(rc.startswith("FIXED_24H") for rc in x["reason_codes"])
    assert any(x["action"] == "RETRY" for x in retries)  # the schedule did act on some
    assert w.metric('authpilot_decisions_total{policy="oracle"') > 0


def test_worker_retries_on_the_issuer_countrys_payday(worker_env, settings_for, tmp_path):
    """AUTHPILOT_RETRY_PAY_CALENDAR reaches the retry agent: a German card short of funds on
    2026-01-06 is retried after the German payday (the 28th), a US card after the 15th."""
    from app.harness.sample import SampleTraffic
    from app.kafka.topics import ensure_topics
    from app.retry.engine import RECOVERY

    cal = RECOVERY.parent / "pay_calendars" / "europe_monthly.json"
    # no exploration: its draw is keyed on the request id, random here, and would send ~3% of
    # these declines to another worthwhile time (the exploration has its own unit test)
    env = dict(worker_env, AUTHPILOT_RETRY_PAY_CALENDAR=str(cal), AUTHPILOT_RETRY_EXPLORE="0")
    ensure_topics(settings_for)
    s, codec, world = settings_for, Codec(settings_for), SampleTraffic(5)
    t0 = 1_767_225_600_000 + 5 * 86_400_000  # 2026-01-06 00:00 UTC
    outs = []
    for i, country in enumerate(["DE", "US"] * 4):
        r = world.next_request(t0 + i * 60_000)
        o = world.outcome(r, "acq-eu", r["event_time"] + 100)
        o.update(response_code="51", failure_side="ISSUER", approved=False, initiator="MIT",
                 issuer_country=country, network="VISA", advice_code=None, attempt=1,
                 three_ds=False)  # fmt: skip
        outs.append(o)
    w = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        produce(s, s.topic_outcomes,
                [(o["card_fingerprint"], codec.outcome.encode(o)) for o in outs])  # fmt: skip
        got = {x["request_id"]: x for x in (codec.retry.decode(m.value())
               for m in read_topic(s, s.topic_retry_decisions, len(outs)))}  # fmt: skip
    finally:
        w.stop()
    assert set(got) == {o["request_id"] for o in outs}
    for o in outs:
        x = got[o["request_id"]]
        day = 28 if o["issuer_country"] == "DE" else 15
        payday = 1_767_225_600_000 + (day - 1) * 86_400_000 + 6 * 3_600_000
        assert x["action"] == "RETRY" and "PAYDAY" in x["reason_codes"], x
        assert x["not_before"] == payday, (o["issuer_country"], x)

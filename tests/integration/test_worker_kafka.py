"""The worker against the real broker: decisions, dead letters, learning, restart, metrics."""

from __future__ import annotations

import struct
import time
from collections import Counter

import pytest

from app.config import REPO_ROOT
from app.contracts.codec import Codec, LocalRegistry
from app.harness.sample import SampleTraffic
from tests.conftest import WorkerProcess, wait_until
from tests.kafka_io import produce, read_topic, topic_end

pytestmark = pytest.mark.kafka


def _requests(n: int, seed: int = 1) -> list[dict]:
    w = SampleTraffic(seed)
    return [w.next_request(1_700_000_000_000 + i) for i in range(n)]


def _decode_all(codec_serde, msgs):
    return [codec_serde.decode(m.value()) for m in msgs]


def test_every_request_gets_exactly_one_decodable_decision(worker, settings_for):
    s = settings_for
    codec = Codec(s)
    reqs = _requests(300)
    produce(s, s.topic_requests, [(r["card_fingerprint"], codec.request.encode(r)) for r in reqs])
    msgs = read_topic(s, s.topic_decisions, expect=len(reqs))
    # decodable with the published schema, read straight from schemas/ (not the worker's codec)
    published = LocalRegistry(REPO_ROOT / "schemas")
    assert all(m.value()[0] == 0 for m in msgs)
    assert {struct.unpack(">I", m.value()[1:5])[0] for m in msgs} == {3}
    assert published.schema_for(3)["name"] == "io.authpilot.RoutingDecision"
    decisions = _decode_all(codec.decision, msgs)
    counts = Counter(d["request_id"] for d in decisions)
    assert set(counts) == {r["request_id"] for r in reqs}
    assert max(counts.values()) == 1
    by_id = {r["request_id"]: r for r in reqs}
    for d in decisions:
        cands = [c["route_id"] for c in by_id[d["request_id"]]["candidates"]]
        assert d["chosen_route"] in cands
        assert [x["route_id"] for x in d["scores"]] == cands
        assert 0 < d["propensity"] <= 1
        assert d["policy"] == "success_rate" and d["reason_codes"]
        assert d["decision_latency_us"] >= 0
    # decisions are keyed by card, like requests, so card state stays co-partitioned
    assert {m.key().decode() for m in msgs} == {r["card_fingerprint"] for r in reqs}


def test_poison_pills_are_dead_lettered_and_the_stream_goes_on(worker, settings_for):
    s = settings_for
    codec = Codec(s)
    good = _requests(40, seed=2)
    enc = codec.request.encode

    def bad(**changes):
        r = dict(good[0], request_id=f"bad-{len(changes)}-{next(iter(changes))}")
        r.update(changes)
        return enc(r)

    outcome = SampleTraffic(3).outcome(good[0], "acq-eu", 1)
    pills = [
        (b"not avro at all", "undecodable"),
        (b"\x00\x00\x00\x00\x01", "undecodable"),  # header only, empty body
        (b"\x07" + enc(good[0])[1:], "undecodable"),  # wrong magic byte
        (b"\x00\x00\x00\x03\xe7" + enc(good[0])[5:], "unknown_schema_id"),  # id 999
        (codec.outcome.encode(outcome), "wrong_schema"),
        (enc(good[0])[:-3], "undecodable"),  # truncated body
        (bad(amount_minor=-500), "invalid_field"),
        (bad(candidates=[]), "invalid_field"),
        (bad(currency="XYZ"), "invalid_field"),
    ]
    items = []
    for i, r in enumerate(good):
        items.append((r["card_fingerprint"], enc(r)))
        if i < len(pills):
            items.append((f"poison-{i}", pills[i][0]))
    produce(s, s.topic_requests, items)

    dead = read_topic(s, s.topic_dead_letter, expect=len(pills))
    records = [codec.dead_letter.decode(m.value()) for m in dead]
    assert sorted(r["reason"] for r in records) == sorted(reason for _, reason in pills)
    by_key = {r["key"].decode(): r for r in records}
    for i, (value, reason) in enumerate(pills):
        rec = by_key[f"poison-{i}"]
        assert rec["value"] == value, "the original bytes are kept untouched"
        assert rec["reason"] == reason
        assert rec["source_topic"] == s.topic_requests
        assert rec["source_offset"] >= 0 and rec["detail"]
    assert any("amount_minor" in r["detail"] for r in records)
    assert any("candidate" in r["detail"] for r in records)
    headers = dict(dead[0].headers())
    assert headers["authpilot.reason"].decode() in {reason for _, reason in pills}

    decided = _decode_all(codec.decision, read_topic(s, s.topic_decisions, expect=len(good)))
    assert Counter(d["request_id"] for d in decided) == Counter(r["request_id"] for r in good)

    metrics = worker.metrics()
    assert 'authpilot_dead_letters_total{reason="invalid_field"} 3.0' in metrics
    assert 'authpilot_dead_letters_total{reason="undecodable"} 4.0' in metrics


def test_outcomes_teach_the_router(worker, settings_for):
    """After outcomes where one route always fails for an issuer, traffic for it moves away."""
    s = settings_for
    codec = Codec(s)
    world = SampleTraffic(5)
    history = [world.next_request(1_700_000_000_000 + i) for i in range(300)]
    outcomes = []
    for r in history:
        for route in ("acq-eu", "acq-us", "proc-global"):
            o = world.outcome(r, route, r["event_time"] + 100)
            good = route == "proc-global"
            # one outcome per request_id (a second one for an id is a duplicate): each route's
            # outcome stands for another attempt
            o.update(approved=good, response_code="00" if good else "05",
                     failure_side="NONE" if good else "ISSUER",
                     request_id=f"{r['request_id']}-{route}")  # fmt: skip
            outcomes.append((r["card_fingerprint"], codec.outcome.encode(o)))
    produce(s, s.topic_outcomes, outcomes)

    owner_topic = f"{s.app_id}-owner-updates"  # outcome batches, one per checkpoint

    def learned() -> bool:
        text = worker.metrics()
        if f'authpilot_events_in_total{{topic="{s.topic_outcomes}"}} {len(outcomes)}.0' not in text:
            return False
        time.sleep(2)  # the last batch leaves at the next checkpoint (1 s)
        end = topic_end(s, owner_topic)
        return end > 0 and f'authpilot_events_in_total{{topic="{owner_topic}"}} {end}.0' in (
            worker.metrics()
        )

    assert wait_until(learned, 60), worker.metrics()
    fresh = _requests(200, seed=6)

    time.sleep(2)  # snapshots reach the GlobalTable through its changelog
    produce(s, s.topic_requests, [(r["card_fingerprint"], codec.request.encode(r)) for r in fresh])
    decisions = _decode_all(codec.decision, read_topic(s, s.topic_decisions, expect=len(fresh)))
    chosen = Counter(d["chosen_route"] for d in decisions)
    # 5% exploration spread over the non-eliminated routes; everything else goes to proc-global
    assert chosen["proc-global"] >= 0.9 * len(fresh), chosen
    for d in decisions:
        sc = {x["route_id"]: x for x in d["scores"]}
        assert sc["proc-global"]["p_approve"] == 1.0 and sc["proc-global"]["samples"] > 0
        assert sc["acq-eu"]["eliminated"] and sc["acq-us"]["eliminated"]


def test_restarted_worker_resumes_without_reprocessing(worker, settings_for):
    s = settings_for
    codec = Codec(s)
    first = _requests(150, seed=8)
    produce(s, s.topic_requests, [(r["card_fingerprint"], codec.request.encode(r)) for r in first])
    assert len(read_topic(s, s.topic_decisions, expect=len(first))) == len(first)
    assert worker.stop() == 0, worker.log_tail()

    second = _requests(120, seed=9)
    produce(s, s.topic_requests, [(r["card_fingerprint"], codec.request.encode(r)) for r in second])
    worker.proc = WorkerProcess(worker.env, worker.log).start().proc  # stopped at teardown
    msgs = read_topic(s, s.topic_decisions, expect=len(first) + len(second), settle=4.0)
    counts = Counter(codec.decision.decode(m.value())["request_id"] for m in msgs)
    assert set(counts) == {r["request_id"] for r in first + second}
    assert max(counts.values()) == 1, "committed requests were decided again after restart"


def test_metrics_endpoint_exports_the_contract(worker, settings_for):
    s = settings_for
    codec = Codec(s)
    reqs = _requests(50, seed=11)
    produce(s, s.topic_requests, [(r["card_fingerprint"], codec.request.encode(r)) for r in reqs])
    read_topic(s, s.topic_decisions, expect=len(reqs))
    text = worker.metrics()
    assert f'authpilot_events_in_total{{topic="{s.topic_requests}"}} 50.0' in text
    assert f'authpilot_events_out_total{{topic="{s.topic_decisions}"}} 50.0' in text
    assert "authpilot_decision_latency_seconds_count 50.0" in text
    assert 'authpilot_decision_latency_seconds_bucket{le="5e-05"}' in text
    from app.monitoring.metrics import METRIC_NAMES

    exported = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    exported_base = {n.removesuffix("_total") for n in exported}
    assert set(METRIC_NAMES) <= exported_base, set(METRIC_NAMES) - exported_base
    # every name the chart's alerts and dashboard may use is really exported by a worker
    contract = REPO_ROOT / "helm" / "authpilot" / "files" / "metrics.txt"
    names = set(contract.read_text().split())
    base = {n.removesuffix("_bucket").removesuffix("_total") for n in names}
    assert base <= exported_base, base - exported_base


def test_every_decline_gets_one_retry_decision(worker, settings_for):
    s = settings_for
    codec = Codec(s)
    world = SampleTraffic(21)
    cases = [("00", "NONE", True), ("41", "ISSUER", False), ("96", "ROUTE", False),
             ("51", "ISSUER", False), ("1A", "ISSUER", False)] * 8  # fmt: skip
    outs = []
    for i, (code, side, ok) in enumerate(cases):
        r = world.next_request(1_767_225_600_000 + i * 60_000)
        o = world.outcome(r, "acq-eu", r["event_time"] + 100)
        if code == "1A" and o["network"] == "MASTERCARD":
            code = "65"  # the SCA soft decline of each network
        # three_ds=False: an SCA decline of a 3DS attempt is a STOP, not a step-up
        o.update(response_code=code, failure_side=side, approved=ok, initiator="MIT",
                 three_ds=False)  # fmt: skip
        outs.append(o)
    produce(s, s.topic_outcomes, [(o["card_fingerprint"], codec.outcome.encode(o)) for o in outs])
    declines = [o for o in outs if not o["approved"]]
    msgs = read_topic(s, s.topic_retry_decisions, expect=len(declines))
    got = {d["request_id"]: d for d in (codec.retry.decode(m.value()) for m in msgs)}
    assert len(msgs) == len(declines) and set(got) == {o["request_id"] for o in declines}
    for o in declines:
        d = got[o["request_id"]]
        if o["response_code"] == "41":
            assert d["action"] == "STOP"
            assert d["reason_codes"][0].split(":")[0] in {"VISA_CATEGORY_1_NEVER_RETRY",
                                                          "MC_HARD_DECLINE"}  # fmt: skip
        elif o["response_code"] == "96":
            assert d["action"] == "RETRY" and d["avoid_route"] == "acq-eu", d
        elif o["response_code"] in ("1A", "65"):
            assert d["action"] == "RETRY" and d["three_ds"], d
        else:
            assert d["not_before"] >= o["event_time"]


def test_an_outcome_delivered_three_times_is_learned_and_answered_once(worker, settings_for):
    """Redelivered at other offsets (same request_id): one RetryDecision, card counts once."""
    s = settings_for
    codec = Codec(s)
    world = SampleTraffic(33)
    r = world.next_request(1_767_225_600_000)
    o = world.outcome(r, "acq-eu", r["event_time"] + 100)
    o.update(response_code="51", failure_side="ISSUER", approved=False, initiator="MIT",
             three_ds=False)  # fmt: skip
    raw = codec.outcome.encode(o)
    key = o["card_fingerprint"]
    produce(s, s.topic_outcomes, [(key, raw)] * 3)
    msgs = read_topic(s, s.topic_retry_decisions, expect=1, settle=4.0)
    assert len(msgs) == 1
    assert wait_until(lambda: worker.metric("authpilot_duplicate_outcomes_total") == 2.0, 30)
    import json
    import urllib.request

    probe = dict(r, request_id="probe", event_time=o["event_time"] + 1)
    req = urllib.request.Request(
        f"http://127.0.0.1:{worker.port}/debug/features", data=json.dumps([probe]).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = json.loads(resp.read())
    row = body["rows"]["probe"][0]
    names = body["names"]
    assert row[names.index("card_24h_n")] == 1.0  # counted once, not three times
    assert row[names.index("card_24h_soft")] == 1.0

"""Experiment and shadow reports on simulator logs whose truth is known."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from app.experiments.report import (
    ReportError,
    experiment_report,
    main,
    read_event_log,
    shadow_report,
    write_event_log,
)
from app.experiments.stats import arm_for
from app.sim import choose_routes, draw_many, load_world, p_approve_matrix
from app.sim.traffic import payment_times, sample_payments, to_batch
from app.sim.truth import APPROVED, fee_matrix

ARMS = [("control", 50), ("treatment", 50)]
CHAMPION, CHALLENGER = "champion/1", "challenger/2"


@dataclass
class Log:
    decisions: pa.Table
    outcomes: pa.Table
    shadow: pa.Table
    challenger_truth: float  # mean true p_approve of the challenger's routes (first attempts)
    drawn: dict[str, tuple[int, int, int]]  # arm -> (payments, approved payments, attempts)
    agreement: float  # challenger's route == logged route, first attempts


@pytest.fixture(scope="module")
def world():
    return load_world("steady")


def _scores(world, merchant: np.ndarray, p_hat: np.ndarray, fees: np.ndarray) -> pa.Array:
    """RoutingDecision.scores per row: every candidate of the row's merchant, score = p."""
    k = world.merchant_ncand[merchant]
    offsets = np.concatenate([[0], np.cumsum(k)]).astype(np.int32)
    row = np.repeat(np.arange(len(merchant)), k)
    r = world.merchant_cand[merchant[row], np.arange(len(row)) - offsets[:-1][row]]
    p = p_hat[row, r]
    struct = pa.StructArray.from_arrays(
        [pa.array(np.array(world.route_ids)[r]), pa.array(p), pa.array(p),
         pa.array(fees[row, r].astype(np.int64)), pa.array(np.zeros(len(r), np.int32)),
         pa.array(np.zeros(len(r), bool))],
        names=["route_id", "p_approve", "score", "fee_minor", "samples", "eliminated"],
    )  # fmt: skip
    return pa.ListArray.from_arrays(pa.array(offsets), struct)


def simulate_log(world, seed: int, n: int, epsilon: float = 0.5, noise: float = 0.03,
                 challenger_bias: float = 0.0, retry: dict[str, float] | None = None,
                 arms=None) -> Log:  # fmt: skip
    """First attempts routed by the simulator's epsilon-greedy logging policy (exact
    propensities), outcomes drawn from the truth, a shadow challenger that routes greedily on
    a noisy copy of the true p_approve (plus a bias, to make it miscalibrated), and for the
    experiment a second attempt on another route with an arm-dependent probability."""
    rng = np.random.default_rng(seed)
    pay = sample_payments(world, payment_times(world, n, rng), rng)
    b = to_batch(world, pay)
    P = p_approve_matrix(world, b)
    fees = fee_matrix(world, b)
    m = pay.merchant
    route, prop = choose_routes(world, m, rng, epsilon=epsilon)
    ok = draw_many(world, b, route, rng).kind == APPROVED
    p_ch = np.clip(P + rng.normal(0, noise, P.shape), 0.001, 0.999)
    p_champ = np.clip(P + rng.normal(0, noise, P.shape), 0.001, 0.999)
    cand = np.zeros_like(P, bool)
    for r in range(P.shape[1]):
        cand[:, r] = (world.merchant_cand[m] == r).any(1)
    greedy = np.where(cand, p_ch - 1e-9 * fees, -1).argmax(1)  # ties (p clipped) to cheaper
    pids = np.char.add(f"s{seed}-p", np.arange(n).astype(str))
    arm = np.array([arm_for(p, arms) for p in pids.tolist()] if arms else ["default"] * n)
    # retries: a declined payment tries another candidate with its arm's probability
    retry_p = np.array([(retry or {}).get(a, 0.0) for a in arm.tolist()])
    second = ~ok & (rng.random(n) < retry_p)
    idx = np.flatnonzero(second)
    k = world.merchant_ncand[m[idx]]
    pos = np.argmax(world.merchant_cand[m[idx]] == route[idx, None], 1)
    pos = (pos + 1 + (rng.random(len(idx)) * (k - 1)).astype(int)) % k
    route2 = world.merchant_cand[m[idx], pos]
    ok2 = draw_many(world, b.take(idx), route2, rng).kind == APPROVED

    rows = np.concatenate([np.arange(n), idx])
    attempt = np.concatenate([np.ones(n, np.int32), np.full(len(idx), 2, np.int32)])
    rids = np.char.add(np.char.add(pids[rows], "-"), attempt.astype(str))
    routes = np.array(world.route_ids)
    chosen = np.concatenate([route, route2])
    decided = pay.t_ms[rows] + attempt
    common = {"request_id": rids, "payment_id": pids[rows], "attempt": attempt,
              "decided_at": decided}  # fmt: skip
    decisions = pa.table({
        **common, "chosen_route": routes[chosen],
        "scores": _scores(world, m[rows], p_champ[rows], fees[rows]),
        "propensity": np.concatenate([prop, 1.0 / (k - 1)]),
        "policy": np.full(len(rows), "epsilon_default"), "arm": arm[rows],
        "model_version": np.full(len(rows), CHAMPION),
        "reason_codes": pa.array([[]] * len(rows), pa.list_(pa.string())),
        "decision_latency_us": np.full(len(rows), 100),
    })  # fmt: skip
    outcomes = pa.table({
        **common, "approved": np.concatenate([ok, ok2]),
        "amount_minor": pay.amount[rows], "route_id": routes[chosen],
    })  # fmt: skip
    p_shadow = np.clip(p_ch + challenger_bias, 0.001, 0.999)
    first = decisions.slice(0, n)
    shadow = (first.set_column(4, "chosen_route", pa.array(routes[greedy]))
              .set_column(5, "scores", _scores(world, m, p_shadow, fees))
              .set_column(6, "propensity", pa.array(np.ones(n)))
              .set_column(8, "arm", pa.array(np.full(n, "shadow")))
              .set_column(9, "model_version", pa.array(np.full(n, CHALLENGER))))  # fmt: skip
    approved_pay = ok.copy()
    approved_pay[idx] |= ok2
    drawn = {}
    for a in np.unique(arm).tolist():
        s = arm == a
        drawn[a] = (int(s.sum()), int(approved_pay[s].sum()), int(s.sum() + second[s].sum()))
    truth = float(P[np.arange(n), greedy].mean())
    agree = float((greedy == route).mean())
    return Log(decisions, outcomes, shadow, truth, drawn, agree)


def _write(tmp_path: Path, log: Log, fmt: str = "parquet") -> Path:
    write_event_log(tmp_path, log.decisions, log.outcomes, log.shadow, fmt=fmt)
    return tmp_path


# ------------------------------------------------------------------------------ acceptance
OPE_ROWS = 150_000  # DR standard error ~0.0017, SNIPS ~0.0020: one point is 5 standard errors


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_off_policy_estimates_of_a_challenger_are_within_one_point_of_its_true_rate(
    world, tmp_path, seed
):
    """Logger: epsilon-greedy (epsilon 0.5) on each merchant's default route, exact
    propensities; challenger: greedy on a noisy copy of the truth, a different policy (it picks
    the logged route on about a third of the attempts)."""
    log = simulate_log(world, seed, n=OPE_ROWS)
    r = shadow_report(read_event_log(_write(tmp_path, log), need_shadow=True))
    (c,) = r.challengers
    e = c.estimate
    truth = log.challenger_truth
    print(f"\nseed {seed}: truth {truth:.4f} DR {e.dr:.4f} ({e.dr - truth:+.4f}) SNIPS "
          f"{e.snips:.4f} ({e.snips - truth:+.4f}) IPS {e.ips:.4f} ({e.ips - truth:+.4f}) "
          f"logged {c.logged_approval.mean:.4f} ESS {e.effective_n:.0f}")  # fmt: skip
    assert abs(e.dr - log.challenger_truth) < 0.01
    assert abs(e.snips - log.challenger_truth) < 0.01
    # the logger is not the challenger: its own rate is a different, lower number
    assert c.logged_approval.mean < log.challenger_truth - 0.02
    assert c.greedy_agreement == pytest.approx(log.agreement)
    assert c.bad_propensity == 0 and c.attempts == OPE_ROWS


# ------------------------------------------------------------------------------ shadow
def test_shadow_agreement_and_calibration(world, tmp_path):
    good = simulate_log(world, 11, n=40_000)
    r = shadow_report(read_event_log(_write(tmp_path / "good", good), need_shadow=True))
    (c,) = r.challengers
    assert c.agreement.mean == pytest.approx(good.agreement)  # shadow chose greedily
    assert c.calibration.ece < 0.02  # p = truth + zero-mean noise: calibrated
    assert int(c.calibration.count.sum()) == round(good.agreement * 40_000)
    biased = simulate_log(world, 11, n=40_000, challenger_bias=0.06)
    r = shadow_report(read_event_log(_write(tmp_path / "biased", biased), need_shadow=True))
    assert r.challengers[0].calibration.ece == pytest.approx(0.06, abs=0.015)


def test_greedy_routes_follow_the_policies_choice_rule():
    """Contract: the vectorized greedy route equals app.routing.choice.choose without
    exploration, ties and eliminated routes included."""
    from app.experiments.report import _scores_column, greedy_routes
    from app.routing.choice import choose

    rng = np.random.default_rng(5)
    lists = []
    for _ in range(2000):
        k = int(rng.integers(1, 5))
        lists.append([{"route_id": f"r{i}", "p_approve": 0.5, "score": float(rng.integers(0, 3)),
                       "fee_minor": int(rng.integers(0, 3)), "eliminated": bool(rng.random() < 0.3)}
                      for i in range(k)])  # fmt: skip
    got = greedy_routes(_scores_column(lists, "test"))
    for g, sc in zip(got, lists, strict=True):
        elig = [i for i, x in enumerate(sc) if not x["eliminated"]] or list(range(len(sc)))
        best, prop, _ = choose("x", [x["score"] for x in sc], [x["fee_minor"] for x in sc],
                               elig, 0.0)  # fmt: skip
        assert g == sc[best]["route_id"] and prop == 1.0


# ------------------------------------------------------------------------------ experiment
def test_experiment_report_counts_what_was_drawn(world, tmp_path):
    log = simulate_log(world, 21, n=40_000, arms=ARMS,
                       retry={"control": 0.2, "treatment": 0.8})  # fmt: skip
    r = experiment_report(read_event_log(_write(tmp_path, log)))
    assert r.control == "control" and set(r.arms) == {"control", "treatment"}
    for arm, (payments, approved, attempts) in log.drawn.items():
        s = r.arms[arm]
        assert (s.payments, s.approved_payments, s.attempts) == (payments, approved, attempts)
        assert s.approval_per_payment.mean == pytest.approx(approved / payments)
        assert s.attempts_per_payment.mean == pytest.approx(attempts / payments)
        lo, hi = s.approval_per_payment.lo, s.approval_per_payment.hi
        assert lo < approved / payments < hi and hi - lo < 0.015
    assert r.pending == 0 and r.orphans == 0 and r.mixed_arm_payments == 0
    (c,) = r.comparisons
    assert c.z.diff == pytest.approx(
        r.arms["treatment"].approval_per_payment.mean - r.arms["control"].approval_per_payment.mean
    )
    assert c.z.diff > 0.02 and c.z.p_value < 1e-6 and c.always_valid_p < 1e-4
    assert c.always_valid_p >= c.z.p_value  # the price of peeking at will
    rails = {g.metric: g for g in c.guardrails}
    assert rails["attempts_per_payment"].verdict == "FAIL"  # 4x the retries
    assert rails["attempts_per_payment"].diff.mean == pytest.approx(
        r.arms["treatment"].attempts_per_payment.mean - r.arms["control"].attempts_per_payment.mean
    )
    (seq,) = r.sequential
    assert np.all(np.diff(seq.always_valid) <= 0) and seq.payments[-1] == 40_000


def test_guardrail_passes_when_arms_behave_alike(world, tmp_path):
    log = simulate_log(world, 22, n=40_000, arms=ARMS, retry={"control": 0.5, "treatment": 0.5})
    r = experiment_report(read_event_log(_write(tmp_path, log)), guardrail_margin=0.02)
    (c,) = r.comparisons
    assert {g.metric: g.verdict for g in c.guardrails} == {
        "attempts_per_payment": "PASS", "fees_per_payment": "PASS"}  # fmt: skip
    assert c.always_valid_p > 0.05  # A/A: no difference to find


def test_cli_writes_reports_with_the_figures(world, tmp_path, capsys):
    log = simulate_log(world, 31, n=8_000, arms=ARMS, retry={"control": 0.3, "treatment": 0.3})
    src = _write(tmp_path / "log", log, fmt="jsonl")
    out = tmp_path / "exp"
    assert main(["experiment", "--log", str(src), "--out", str(out), "--quiet"]) == 0
    md = (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    for arm, (payments, approved, _) in log.drawn.items():
        assert f"{approved / payments:.2%}" in md
        assert summary["arms"][arm]["payments"] == payments
    assert (out / "approval.png").stat().st_size > 5000
    assert (out / "sequential.png").stat().st_size > 5000
    out = tmp_path / "shadow"
    assert main(["shadow", "--log", str(src), "--out", str(out), "--quiet"]) == 0
    md = (out / "report.md").read_text()
    e = json.loads((out / "summary.json").read_text())["challengers"][0]["estimate"]
    assert f"{e['dr']:.2%}" in md and "ECE" in md
    assert (out / "calibration_challenger_2.png").stat().st_size > 5000
    assert (out / "off_policy_challenger_2.png").stat().st_size > 5000
    capsys.readouterr()


def test_parquet_and_jsonl_logs_give_the_same_report(world, tmp_path):
    log = simulate_log(world, 41, n=3_000, arms=ARMS, retry={"control": 0.5, "treatment": 0.5})
    a = experiment_report(read_event_log(_write(tmp_path / "pq", log)))
    b = experiment_report(read_event_log(_write(tmp_path / "js", log, fmt="jsonl")))
    assert a.arms == b.arms
    sa = shadow_report(read_event_log(tmp_path / "pq", need_shadow=True)).challengers[0]
    sb = shadow_report(read_event_log(tmp_path / "js", need_shadow=True)).challengers[0]
    assert sa.estimate == sb.estimate


def test_duplicates_and_missing_outcomes_are_counted_not_double_counted(world, tmp_path):
    log = simulate_log(world, 42, n=2_000)
    dec = pa.concat_tables([log.decisions, log.decisions.slice(0, 100)])  # redelivered
    write_event_log(tmp_path, dec, log.outcomes.slice(0, 1_900))
    r = experiment_report(read_event_log(tmp_path))
    assert r.dropped["decisions"] == 100 and r.pending == 100
    assert r.arms["default"].attempts == 1_900


# ------------------------------------------------------------------------------ errors
def test_clear_errors_for_missing_and_invalid_inputs(world, tmp_path, capsys):
    with pytest.raises(ReportError, match="no such event-log directory"):
        read_event_log(tmp_path / "nope")
    log = simulate_log(world, 51, n=500)
    write_event_log(tmp_path / "a", log.decisions, log.outcomes)
    with pytest.raises(ReportError, match="no shadow"):
        read_event_log(tmp_path / "a", need_shadow=True)
    (tmp_path / "b").mkdir()
    write_event_log(tmp_path / "b", log.decisions, log.outcomes, fmt="jsonl")
    (tmp_path / "b" / "outcomes.jsonl").unlink()
    with pytest.raises(ReportError, match="no outcomes"):
        read_event_log(tmp_path / "b")
    write_event_log(tmp_path / "c", log.decisions.drop(["propensity"]), log.outcomes)
    with pytest.raises(ReportError, match=r"lack the columns \['propensity'\]"):
        read_event_log(tmp_path / "c")
    write_event_log(tmp_path / "d", log.decisions, log.outcomes, fmt="jsonl")
    with (tmp_path / "d" / "outcomes.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(ReportError, match=r"outcomes.jsonl:501: not JSON"):
        read_event_log(tmp_path / "d")
    with pytest.raises(ReportError, match="control arm 'ctl' has no payments"):
        experiment_report(read_event_log(tmp_path / "a"), control="ctl")
    write_event_log(tmp_path / "e", log.decisions, log.outcomes.slice(0, 0))
    with pytest.raises(ReportError, match="no decision has an outcome"):
        experiment_report(read_event_log(tmp_path / "e"))
    assert main(["shadow", "--log", str(tmp_path / "a"), "--out", str(tmp_path / "o")]) == 2
    assert "error: " in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_kafka_reader_stops_at_the_end_offsets_of_the_start(monkeypatch):
    """A fake consumer: partition 0 holds offsets 0-2 then an EOF, partition 1 offsets 5-6 and
    a message written after the read started (offset 7, beyond the high watermark 7); one
    message is undecodable. No broker is needed (the broker-level path is integration)."""
    import confluent_kafka

    from app.experiments import report

    class Err:
        def __init__(self, code):
            self._code = code

        def code(self):
            return self._code

    class Msg:
        def __init__(self, p, off, value=None, err=None):
            self.p, self.off, self.v, self.err = p, off, value, err

        def partition(self):
            return self.p

        def offset(self):
            return self.off

        def value(self):
            return self.v

        def error(self):
            return self.err

    eof = Err(confluent_kafka.KafkaError._PARTITION_EOF)
    batches = [
        [Msg(0, 0, b'{"n": 0}'), Msg(1, 5, b'{"n": 5}'), Msg(0, 1, b"garbage")],
        [Msg(0, 2, b'{"n": 2}'), Msg(0, 3, err=eof), Msg(1, 6, b'{"n": 6}')],
        [Msg(1, 7, b'{"n": 7}')],
    ]

    class FakeConsumer:
        def __init__(self, conf):
            assert conf["enable.auto.commit"] is False

        def list_topics(self, topic, timeout):
            meta = type("T", (), {"error": None, "partitions": {0: None, 1: None}})
            return type("M", (), {"topics": {topic: meta}})

        def get_watermark_offsets(self, tp, timeout):
            return {0: (0, 4), 1: (5, 7)}[tp.partition]

        def assign(self, tps):
            assert [(t.partition, t.offset) for t in tps] == [(0, 0), (1, 5)]

        def consume(self, n, timeout):
            return batches.pop(0) if batches else []

        def close(self):
            pass

    def decode(b: bytes) -> dict:
        return json.loads(b)  # JSONDecodeError is a ValueError, as codec.DecodeError is

    monkeypatch.setattr(confluent_kafka, "Consumer", FakeConsumer)
    notes: list[str] = []
    rows, bad = report._read_topic({"bootstrap.servers": "x:1"}, "t", decode, False,
                                   notes.append, 5.0)  # fmt: skip
    assert sorted(r["n"] for r in rows) == [0, 2, 5, 6] and bad == 1
    assert notes[-1].startswith("t: 5/6 messages")
    assert len(batches) == 1  # stopped without waiting for the late message

"""Experiment report on simulator logs whose truth is known: counts, tests, guardrails."""

from __future__ import annotations

import numpy as np
import pytest

from app.experiments.eventlog import ReportError, read_event_log, write_event_log
from app.experiments.experiment import experiment_report
from tests.unit.experiments.simlog import ARMS, simulate_log, write_log


def test_experiment_report_counts_what_was_drawn(world, tmp_path):
    log = simulate_log(world, 21, n=40_000, arms=ARMS,
                       retry={"control": 0.2, "treatment": 0.8})  # fmt: skip
    r = experiment_report(read_event_log(write_log(tmp_path, log)))
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
    r = experiment_report(read_event_log(write_log(tmp_path, log)), guardrail_margin=0.02)
    (c,) = r.comparisons
    assert {g.metric: g.verdict for g in c.guardrails} == {
        "attempts_per_payment": "PASS", "fees_per_payment": "PASS"}  # fmt: skip
    assert c.always_valid_p > 0.05  # A/A: no difference to find


def test_clear_errors_for_an_unknown_control_and_no_outcomes(world, tmp_path):
    log = simulate_log(world, 51, n=500)
    write_event_log(tmp_path / "a", log.decisions, log.outcomes)
    with pytest.raises(ReportError, match="control arm 'ctl' has no payments"):
        experiment_report(read_event_log(tmp_path / "a"), control="ctl")
    write_event_log(tmp_path / "e", log.decisions, log.outcomes.slice(0, 0))
    with pytest.raises(ReportError, match="no decision has an outcome"):
        experiment_report(read_event_log(tmp_path / "e"))

"""The chaos suite's short version (issue 15 item 7) on the session broker: one worker SIGKILL,
one two-worker failover, one fuzz batch over every malformation, redelivered outcomes.

Each asserts the issue's targets from what the topics hold afterwards (app.chaos.verify); the
full-size runs are tests/chaos/ (`make test-slow`) and `authpilot chaos`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.chaos import scenarios
from app.chaos.report import Progress, Result, markdown

pytestmark = pytest.mark.kafka

SAY = Progress()


def _show(res: Result) -> str:
    return markdown([res])


def test_one_kill_loses_nothing_and_state_equals_a_replay(kafka_bootstrap: str, tmp_path: Path):
    res = scenarios.kill_loop(kafka_bootstrap, tmp_path, scenarios.SHORT, SAY)
    v = res.figures["verified"]
    assert v.decisions.requests > 0 and v.valid_outcomes > 0, _show(res)
    assert v.decisions.lost == 0, _show(res)
    assert v.decisions.disagreeing_ids == 0, _show(res)
    assert v.state is not None and v.state.ok, _show(res)
    assert v.retries.ok, _show(res)


def test_one_failover_takes_over_within_10s_without_gaps(kafka_bootstrap: str, tmp_path: Path):
    res = scenarios.failover(kafka_bootstrap, tmp_path, scenarios.SHORT, SAY)
    v = res.figures["verified"]
    (t,) = res.figures["takeovers"]
    assert t.dead_partitions, _show(res)  # the victim's partitions were known
    assert t.first_s is not None and t.first_s <= 10.0, _show(res)
    assert v.decisions.lost == 0 and v.decisions.gap_count == 0, _show(res)
    assert not scenarios.stuck(v.commits), _show(res)


def test_fuzz_batch_dead_letters_every_case_with_its_reason(kafka_bootstrap: str,
                                                            tmp_path: Path):  # fmt: skip
    res = scenarios.fuzz(kafka_bootstrap, tmp_path, scenarios.SHORT, SAY)
    v = res.figures["verified"]
    dl = v.dead
    assert len(dl.cases) == len(scenarios.fuzz_cases.specs()), _show(res)  # every case sent
    assert dl.right == dl.injected, _show(res)
    assert v.decisions.lost == 0, _show(res)
    failed = {c.name for c in res.failed}
    assert not failed, _show(res)


def test_redelivered_and_far_future_outcomes_leave_state_as_a_replay(kafka_bootstrap: str,
                                                                     tmp_path: Path):  # fmt: skip
    res = scenarios.redelivery(kafka_bootstrap, tmp_path, scenarios.SHORT, SAY)
    v = res.figures["verified"]
    assert v.retries.declines > 0 and v.retries.missing == 0 and v.retries.extra == 0, _show(res)
    assert v.retries.unexpected == 0, _show(res)  # none for the outcome 100 years ahead
    assert v.dead.cases["out.time_future_100y"].right == 1, _show(res)
    assert v.state is not None and v.state.ok, _show(res)

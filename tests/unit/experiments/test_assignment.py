"""Arm assignment: stable per payment, split as configured, cheap to import."""

import subprocess
import sys
from collections import Counter

from app.experiments.assignment import arm_for, bucket


def test_arms_are_stable_and_follow_the_split():
    arms = [("control", 45), ("treatment", 45)]
    got = Counter(arm_for(f"pay-{i}", arms, holdout_pct=10) for i in range(20000))
    assert abs(got["holdout"] / 20000 - 0.10) < 0.01
    assert abs(got["control"] / 20000 - 0.45) < 0.015
    assert arm_for("pay-7", arms, 10) == arm_for("pay-7", arms, 10)
    assert 0 <= bucket("x") < 100


def test_assignment_imports_no_numerics():
    """The dispatcher imports it on the hot path: only the standard library."""
    code = ("import sys, app.experiments.assignment; "
            "print(sorted({'numpy', 'pandas', 'scipy'} & set(sys.modules)))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

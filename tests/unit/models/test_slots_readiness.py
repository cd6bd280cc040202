"""/readyz's model rule: a promoted champion must be the one served (or refused with a fallback)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from app.models.artifact import ModelRejected
from app.models.serving.registry import ModelSlots


def _rec(version: str) -> dict[str, Any]:
    return {"name": "router", "version": version, "role": "champion", "promoted_at": 1}


def test_no_promotion_no_wait() -> None:
    assert not ModelSlots(Path("."), "h").champion_missing({})


def test_promoted_and_not_loaded_is_missing_until_served() -> None:
    slots = ModelSlots(Path("."), "h")
    reg = {"champion": _rec("v1")}
    assert slots.champion_missing(reg)
    model: Any = SimpleNamespace(name="router", version="v1", label="router/v1")
    slots.install("champion", _rec("v1"), model, None)
    assert not slots.champion_missing(reg)


def test_a_refused_champion_with_nothing_to_fall_back_on_stays_missing() -> None:
    slots = ModelSlots(Path("."), "h")
    slots.install("champion", _rec("v1"), None, ModelRejected("checksum", "bad"))
    assert slots.champion_missing({"champion": _rec("v1")})


def test_a_refused_upgrade_keeps_the_old_champion_ready() -> None:
    slots = ModelSlots(Path("."), "h")
    old: Any = SimpleNamespace(name="router", version="v1", label="router/v1")
    slots.install("champion", _rec("v1"), old, None)
    reg = {"champion": _rec("v2")}
    assert slots.champion_missing(reg)  # v2 promoted, not attempted yet
    slots.install("champion", _rec("v2"), None, ModelRejected("checksum", "bad"))
    assert not slots.champion_missing(reg)  # refused: v1 keeps serving


def test_the_retry_model_has_its_own_slot_and_readiness() -> None:
    from app.models.roles import control_key

    slots = ModelSlots(Path("."), "h")
    rec = {"name": "retry", "version": "r1", "role": "retry", "promoted_at": 1}
    reg = {"retry": rec}
    assert (
        control_key("retry", "retry") == "retry"
        and control_key("x", "challenger") == "challenger:x"
    )
    assert slots.retry_missing(reg) and not slots.champion_missing(reg)
    model: Any = SimpleNamespace(name="retry", version="r1", label="retry/r1")
    slots.install("retry", rec, model, None)
    assert slots.retry is model and slots.champion is None and not slots.retry_missing(reg)
    bad = dict(rec, version="r2", promoted_at=2)
    slots.install("retry", bad, None, ModelRejected("feature_hash", "a router artifact"))
    assert slots.retry is model and not slots.retry_missing({"retry": bad})  # r1 keeps serving


def test_an_unknown_role_is_refused_before_anything_is_written() -> None:
    import pytest

    from app.models.roles import control_key

    with pytest.raises(ValueError, match="role"):
        control_key("router", "canary")


def test_a_retired_challenger_stops_shadowing_and_serving_reports_say_so() -> None:
    slots = ModelSlots(Path("."), "h")
    ch: Any = SimpleNamespace(name="router", version="v2", label="router/v2")
    rec = {"name": "router", "version": "v2", "role": "challenger", "promoted_at": 1}
    slots.install("challenger:router", rec, ch, None)
    slots.install("champion", _rec("v1"), SimpleNamespace(name="router", version="v1",
                                                           label="router/v1"), None)  # fmt: skip
    assert slots.serving() == {"champion": "router/v1", "challenger:router": "router/v2"}
    retired = {"name": "router", "version": None, "role": "challenger", "retired": True,
               "promoted_at": 2}  # fmt: skip
    assert slots.pending({"challenger:router": retired}) == [("challenger:router", retired)]
    assert slots.load(retired) is None
    slots.install("challenger:router", retired, None, None)
    assert slots.challengers == {} and slots.serving() == {"champion": "router/v1"}
    assert slots.pending({"challenger:router": retired}) == []  # done once
    # serving reports on the control topic are not promotions
    assert slots.pending({"serving:w1": {"worker": "w1", "models": {}}}) == []

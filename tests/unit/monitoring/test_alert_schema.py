"""Alert.avsc: registered as subject Alert (id 6), documented, and the monitor's dicts fit it."""

import json
import struct

import pytest

from app.config import REPO_ROOT, Settings
from app.contracts.codec import Codec
from app.monitoring import ALERT_KINDS, HealthMonitor, MonitorConfig

SCHEMA = json.loads((REPO_ROOT / "schemas" / "Alert.avsc").read_text())


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(Settings(schema_registry_url=None))


def _alert(kind: str = "ROUTE_DEMOTED") -> dict:
    return {
        "alert_id": f"{kind}:acq-de:1768457301147",
        "kind": kind,
        "subject": "acq-de",
        "detector": "route_failure:window(n=20)",
        "value": 0.77,
        "baseline": 0.0047,
        "event_time": 1768457301147,
        "raised_at": 1768457301200,
        "message": "acq-de demoted: last 20 outcomes route-failure rate 0.770 (baseline 0.005), "
        "approval 0.150 vs expected 0.850",
    }


def test_registered_as_subject_alert_with_id_6(codec):
    reg = json.loads((REPO_ROOT / "schemas" / "registry.json").read_text())
    assert reg["subjects"]["Alert"] == [{"id": 6, "file": "Alert.avsc"}]
    ids = [v["id"] for vs in reg["subjects"].values() for v in vs]
    assert len(ids) == len(set(ids))
    assert codec.serde("Alert").schema_id == 6


def test_every_field_documented_and_kinds_match_the_monitor():
    assert SCHEMA["doc"]
    for f in SCHEMA["fields"]:
        assert f.get("doc"), f["name"]
    kind = next(f for f in SCHEMA["fields"] if f["name"] == "kind")["type"]
    assert set(ALERT_KINDS) <= set(kind["symbols"])


@pytest.mark.parametrize("kind", ALERT_KINDS)
def test_roundtrip_in_confluent_framing(codec, kind):
    rec = _alert(kind)
    data = codec.serde("Alert").encode(rec)
    assert struct.unpack(">bI", data[:5]) == (0, 6)
    assert codec.serde("Alert").decode(data) == rec


def test_alerts_the_monitor_raises_encode(codec):
    # the real default route health: route failures demote within a window, healthy probes
    # restore; both alerts' dicts must fit the schema
    mon = HealthMonitor(MonitorConfig(), model_version="m/1", clock=lambda: 42)
    for t in range(50):
        assert mon.observe_outcome("acq-de", True, "NONE", t, 0.9) == []
    alerts = [a for t in range(20) for a in mon.observe_outcome("acq-de", False, "ROUTE",
                                                                1_000 + t, 0.9)]  # fmt: skip
    alerts += [a for t in range(10) for a in mon.observe_outcome("acq-de", True, "NONE",
                                                                 5_000 + t, 0.9)]  # fmt: skip
    assert [a["kind"] for a in alerts] == ["ROUTE_DEMOTED", "ROUTE_RESTORED"]
    serde = codec.serde("Alert")
    for a in alerts:
        assert serde.decode(serde.encode(a)) == a
        assert a["raised_at"] == 42

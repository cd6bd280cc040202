"""The Helm chart renders, lints and validates offline; its alert rules are tested like code.

Tools are installed by helm/tools/install-tools.sh (helm from its Go module, promtool from
Debian); a failed install fails these tests, it never skips them.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from app.config import REPO_ROOT
from app.metrics import METRIC_NAMES

CHART = REPO_ROOT / "helm" / "authpilot"
FILES = CHART / "files"
VALUES = [None, *sorted(CHART.glob("values-*.yaml"))]
K8S_VERSION = "1.33"


@pytest.fixture(scope="session")
def helm() -> str:
    res = subprocess.run(
        ["bash", str(REPO_ROOT / "helm" / "tools" / "install-tools.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert res.returncode == 0, f"tool install failed:\n{res.stderr[-3000:]}"
    return res.stdout.strip().splitlines()[-1]


def _run(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _ids(v: Path | None) -> str:
    return "default" if v is None else v.name


@pytest.mark.parametrize("values", VALUES, ids=_ids)
def test_helm_lint(helm, values):
    cmd = [helm, "lint", "--strict", str(CHART)]
    if values:
        cmd += ["-f", str(values)]
    _run(cmd)


@pytest.mark.parametrize("values", VALUES, ids=_ids)
def test_rendered_manifests_are_valid_kubernetes(helm, values):
    cmd = [helm, "template", "rel", str(CHART), "--namespace", "payments"]
    if values:
        cmd += ["-f", str(values)]
    docs = [d for d in yaml.safe_load_all(_run(cmd)) if d]
    kinds = {d["kind"] for d in docs}
    assert {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    for d in docs:
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            # CRDs: no schema ships offline; check the shape the operator requires
            assert d["kind"] in {"ServiceMonitor", "PrometheusRule"} and d["spec"]
            continue
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/var/lib/authpilot", "/tmp"} <= mounts, "data dir and /tmp must stay writable"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_secrets_and_model_sources_render(helm):
    out = _run([helm, "template", "rel", str(CHART),
                "--set", "kafka.securityProtocol=SASL_SSL",
                "--set", "kafka.sasl.mechanism=SCRAM-SHA-512",
                "--set", "kafka.sasl.existingSecret=kafka-user",
                "--set", "kafka.tls.existingSecret=kafka-ca",
                "--set", "models.source=initContainer",
                "--set", "models.initImage=registry/models:1"])  # fmt: skip
    docs = [d for d in yaml.safe_load_all(out) if d]
    for d in docs:
        if not d["apiVersion"].startswith("monitoring.coreos.com/"):
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AUTHPILOT_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kafka-user"
    assert sts["spec"]["template"]["spec"]["initContainers"][0]["image"] == "registry/models:1"
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert cm["data"]["AUTHPILOT_KAFKA_SSL_CAFILE"].endswith("ca.crt")


def test_values_schema_rejects_bad_values(helm):
    res = subprocess.run([helm, "template", "rel", str(CHART), "--set", "models.source=s3"],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode != 0 and "/models/source" in res.stderr


def test_promtool_checks_and_unit_tests_the_alert_rules():
    _run(["promtool", "check", "rules", str(FILES / "alerts.yaml")])
    out = _run(["promtool", "test", "rules", str(FILES / "alerts-tests.yaml")])
    assert "SUCCESS" in out
    tests = yaml.safe_load((FILES / "alerts-tests.yaml").read_text())["tests"]
    rules = yaml.safe_load((FILES / "alerts.yaml").read_text())["groups"][0]["rules"]
    for rule in rules:  # every alert is tested both firing and silent
        cases = [c for t in tests for c in t["alert_rule_test"] if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in cases), f"{rule['alert']} never tested firing"
        assert any(not c["exp_alerts"] for c in cases), f"{rule['alert']} never tested silent"


def _names_in(text: str) -> set[str]:
    return set(re.findall(r"\bauthpilot_[a-z_]+", text))


def test_alerts_and_dashboard_use_only_exported_metrics():
    contract = set((FILES / "metrics.txt").read_text().split())
    exported = {n for m in METRIC_NAMES for n in (m, f"{m}_total", f"{m}_bucket", f"{m}_count")}
    assert contract <= exported, contract - exported
    used = _names_in((FILES / "alerts.yaml").read_text())
    dash = json.loads((FILES / "dashboard.json").read_text())
    used |= {n for p in dash["panels"] for t in p["targets"] for n in _names_in(t["expr"])}
    assert used <= contract, used - contract

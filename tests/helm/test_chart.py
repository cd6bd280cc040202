"""The Helm chart lints, renders and validates offline; its alert rules are tested like code.

helm/tools/install-tools.sh installs the tools once per session (helm and kubeconform built
from their Go modules, Kubernetes JSON schemas from the kubernetes-validate PyPI package,
promtool from Debian). A failed install fails these tests: nothing here is ever skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "authpilot"
FILES = CHART / "files"
DOCKER = REPO / "helm" / "docker"
INSTALL = REPO / "helm" / "tools" / "install-tools.sh"
VALUES = [None, *sorted(CHART.glob("values-*.yaml"))]

# Building helm from source on a fresh machine takes minutes; it happens in the first test's setup.
pytestmark = pytest.mark.timeout(1800)

# The worker's metric contract (issue 8), as Prometheus exposes the names.
CONTRACT = {
    "authpilot_events_in_total",
    "authpilot_events_out_total",
    "authpilot_dead_letters_total",
    "authpilot_decision_latency_seconds_bucket",
    "authpilot_decisions_total",
    "authpilot_consumer_lag",
    "authpilot_offset_gaps_total",
    "authpilot_offset_rewinds_total",
    "authpilot_stale_requests_total",
    "authpilot_resent_decisions_total",
    "authpilot_model_load_failures_total",
    "authpilot_model_info",
    "authpilot_state_writes_total",
    "authpilot_checkpoint_seconds_bucket",
    "authpilot_replayed_total",
    "authpilot_duplicate_outcomes_total",
    "authpilot_shadow_latency_seconds_bucket",
    "authpilot_alerts_total",
    "authpilot_drift_alarm",
    "authpilot_route_demoted",
}


def _install_env() -> dict[str, str]:
    return {**os.environ, "PYTHON": sys.executable}


@pytest.fixture(scope="session")
def tools() -> dict[str, str]:
    res = subprocess.run(
        ["bash", str(INSTALL)], capture_output=True, text=True, timeout=1700, env=_install_env()
    )
    assert res.returncode == 0, f"install-tools.sh failed ({res.returncode}):\n{res.stderr[-4000:]}"
    found = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    for key in ("HELM", "KUBECONFORM", "DOCKERFILE_CHECK", "PROMTOOL"):
        assert Path(found[key]).is_file(), f"{key} not installed: {found.get(key)}"
    return found


def run(
    cmd: list[str], check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, input=stdin)
    if check:
        assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _ids(v: Path | None) -> str:
    return "default" if v is None else v.name


def template(tools, values: Path | None = None, sets: tuple[str, ...] = (), check=True):
    cmd = [tools["HELM"], "template", "rel", str(CHART), "--namespace", "payments"]
    if values:
        cmd += ["-f", str(values)]
    for s in sets:
        cmd += ["--set", s]
    return run(cmd, check=check)


def docs_of(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def kubeconform(tools, manifests: str, check=True) -> subprocess.CompletedProcess:
    """Strict offline validation: built-in kinds and the monitoring.coreos.com CRDs; a kind
    without a schema is an error (no -ignore-missing-schemas)."""
    k8s = f"{tools['K8S_SCHEMAS']}/v{tools['K8S_VERSION']}-standalone-strict"
    cmd = [
        tools["KUBECONFORM"], "-strict", "-summary", "-output", "json",
        "-kubernetes-version", tools["K8S_VERSION"],
        "-schema-location", k8s + "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
        "-schema-location", tools["CRD_SCHEMAS"] + "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
        "-",
    ]  # fmt: skip
    return run(cmd, check=check, stdin=manifests)


def _summary(res: subprocess.CompletedProcess) -> dict:
    return json.loads(res.stdout)["summary"]


# --- tools -------------------------------------------------------------------------------------


def test_install_tools_is_idempotent_and_fast(tools, tmp_path):
    t0 = time.monotonic()
    res = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, env=_install_env())
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 < 10, "a second run must not rebuild anything"
    assert "building" not in res.stderr and "installing" not in res.stderr, res.stderr
    version = run([tools["HELM"], "version", "--template", "{{ .Version }}"]).stdout
    assert re.fullmatch(r"v3\.\d+\.\d+", version), version
    # built with the release ldflags, helm targets the Kubernetes of its client-go (1.3x), not
    # the 1.20 its source falls back to (lint deprecations, .Capabilities.KubeVersion)
    probe = tmp_path / "probe"
    (probe / "templates").mkdir(parents=True)
    (probe / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (probe / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p}\n"
        "data: {kube: {{ .Capabilities.KubeVersion.Minor | quote }}}\n"
    )
    out = run([tools["HELM"], "template", str(probe)]).stdout
    assert int(yaml.safe_load(out)["data"]["kube"]) >= 30, out


def test_install_tools_fails_loudly(tmp_path):
    """A tool that cannot be installed is an error (exit != 0), never a silent skip."""
    env = {**_install_env(), "AUTHPILOT_TOOLS": str(tmp_path), "HELM_VERSION": "v3.0.0-nonexistent"}
    res = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, env=env)
    assert res.returncode != 0, res.stdout
    assert "HELM=" not in res.stdout and not (tmp_path / "bin" / "helm").exists()


# --- chart -------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES, ids=_ids)
def test_helm_lint(tools, values):
    cmd = [tools["HELM"], "lint", "--strict", str(CHART)]
    if values:
        cmd += ["-f", str(values)]
    out = run(cmd).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out


@pytest.mark.parametrize("values", VALUES, ids=_ids)
def test_rendered_manifests_validate_offline(tools, values):
    text = template(tools, values).stdout
    docs = docs_of(text)
    summary = _summary(kubeconform(tools, text))
    assert summary["valid"] == len(docs), summary
    assert summary["invalid"] == summary["errors"] == summary["skipped"] == 0, summary

    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    assert {"StatefulSet", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"} <= set(by_kind)
    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    assert services["rel-authpilot-headless"]["spec"]["clusterIP"] == "None"
    assert "rel-authpilot-metrics" in services

    sts = by_kind["StatefulSet"][0]
    assert sts["spec"]["serviceName"] == "rel-authpilot-headless"
    pod = sts["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    csc = c["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/var/lib/authpilot"] == "data" and mounts["/tmp"] == "tmp"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "web"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"web": 6066}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    assert pod["topologySpreadConstraints"]

    cm = next(d for d in by_kind["ConfigMap"] if d["metadata"]["name"] == "rel-authpilot")
    data = cm["data"]
    assert all(isinstance(v, str) for v in data.values())
    assert data["AUTHPILOT_DATA_DIR"] == "/var/lib/authpilot"
    assert data["AUTHPILOT_WEB_PORT"] == "6066"
    assert data["AUTHPILOT_WEB_HOST"] == "0.0.0.0"  # the worker's default is 127.0.0.1
    assert data["AUTHPILOT_MODEL_DIR"] == "/compiled_models"
    vals = yaml.safe_load((values or CHART / "values.yaml").read_text())
    if "standbyReplicas" in vals:
        assert data["AUTHPILOT_TABLE_STANDBY_REPLICAS"] == str(vals["standbyReplicas"])
    for k, v in vals.get("config", {}).items():
        assert data[k] == str(v)
    merged = {**yaml.safe_load((CHART / "values.yaml").read_text())["consumer"],
              **vals.get("consumer", {})}  # fmt: skip
    assert data["AUTHPILOT_CONSUMER_SESSION_TIMEOUT_MS"] == str(merged["sessionTimeoutMs"])
    env = {e["name"]: e for e in c["env"]}
    # static membership: each pod's stable StatefulSet name is its group.instance.id
    assert ("AUTHPILOT_GROUP_INSTANCE_ID" in env) == merged["staticMembership"]
    if merged["staticMembership"]:
        assert env["AUTHPILOT_GROUP_INSTANCE_ID"]["value"] == "$(POD_NAME)"
    assert not {k for k in data if "PASSWORD" in k or "USER_INFO" in k}, "secrets in a ConfigMap"


def test_environment_sizes_scale_up(tools):
    def sts(v):
        return next(d for d in docs_of(template(tools, v).stdout) if d["kind"] == "StatefulSet")

    sizes = [sts(CHART / f"values-{s}.yaml") for s in ("small", "medium", "large")]
    replicas = [s["spec"]["replicas"] for s in sizes]
    assert replicas == sorted(replicas) and len(set(replicas)) == 3, replicas
    kinds = {d["kind"] for d in docs_of(template(tools, CHART / "values-large.yaml").stdout)}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds


def test_kubeconform_is_not_vacuous(tools):
    """The offline validation really rejects bad manifests, CRDs included."""
    text = template(tools, CHART / "values-large.yaml").stdout
    bad_field = text.replace(
        "podManagementPolicy: Parallel", "podManagementPolicy: Parallel\n  replica: 3"
    )
    assert bad_field != text
    assert kubeconform(tools, bad_field, check=False).returncode != 0
    bad_rule = text.replace("for: 5m", "for: 5 minutes", 1)
    assert bad_rule != text
    res = kubeconform(tools, bad_rule, check=False)
    assert res.returncode != 0 and "PrometheusRule" in res.stdout, res.stdout
    unknown = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    assert kubeconform(tools, unknown, check=False).returncode != 0, "missing schemas must fail"


def test_secrets_and_kafka_security(tools):
    text = template(tools, sets=(
        "kafka.securityProtocol=SASL_SSL",
        "kafka.sasl.mechanism=SCRAM-SHA-512",
        "kafka.sasl.existingSecret=kafka-user",
        "kafka.tls.existingSecret=kafka-ca",
        "schemaRegistry.url=https://registry:8081",
        "schemaRegistry.existingSecret=registry-auth",
    )).stdout  # fmt: skip
    kubeconform(tools, text)
    docs = docs_of(text)
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    ref = env["AUTHPILOT_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "kafka-user", "key": "password"}
    assert env["AUTHPILOT_KAFKA_SASL_USERNAME"]["valueFrom"]["secretKeyRef"]["key"] == "username"
    reg = env["AUTHPILOT_SCHEMA_REGISTRY_USER_INFO"]["valueFrom"]["secretKeyRef"]
    assert reg == {"name": "registry-auth", "key": "user-info"}
    cm = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert cm["AUTHPILOT_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert cm["AUTHPILOT_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert cm["AUTHPILOT_KAFKA_SSL_CAFILE"] == "/etc/authpilot/kafka-tls/ca.crt"
    assert cm["AUTHPILOT_SCHEMA_REGISTRY_URL"] == "https://registry:8081"
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["kafka-tls"]["secret"]["secretName"] == "kafka-ca"
    assert "kafka-user" not in json.dumps(cm)


def test_network_policy_egress_allow_list(tools):
    np_of = lambda text: next(d for d in docs_of(text) if d["kind"] == "NetworkPolicy")  # noqa: E731
    default = np_of(template(tools).stdout)["spec"]
    assert default["policyTypes"] == ["Ingress"] and "egress" not in default
    (rule,) = default["ingress"]
    assert rule["ports"] == [{"port": 6066, "protocol": "TCP"}]
    text = template(tools, sets=(
        "networkPolicy.egress[0].to[0].ipBlock.cidr=10.20.0.0/16",
        "networkPolicy.egress[0].ports[0].port=9093",
    )).stdout  # fmt: skip
    kubeconform(tools, text)
    spec = np_of(text)["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    dns, kafka = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert kafka["to"][0]["ipBlock"]["cidr"] == "10.20.0.0/16"


@pytest.mark.parametrize("source", ["image", "volume", "initContainer"])
def test_model_sources(tools, source):
    sets = {
        "image": (),
        "volume": ("models.source=volume", "models.existingClaim=authpilot-models"),
        "initContainer": ("models.source=initContainer", "models.initImage=registry/models:7"),
    }[source]
    text = template(tools, sets=sets).stdout
    kubeconform(tools, text)
    pod = next(d for d in docs_of(text) if d["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    if source == "image":
        assert "/compiled_models" not in mounts and "initContainers" not in pod
        return
    assert mounts["/compiled_models"]["readOnly"] is True
    if source == "volume":
        assert vols["models"]["persistentVolumeClaim"]["claimName"] == "authpilot-models"
    else:
        (init,) = pod["initContainers"]
        assert init["image"] == "registry/models:7"
        assert init["securityContext"]["readOnlyRootFilesystem"] is True
        assert "emptyDir" in vols["models"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("models.source=s3",), "/models/source"),
        (("replicaCont=3",), "'replicaCont' not allowed"),
        (("replicaCount=0",), "/replicaCount"),
        (
            ("config.AUTHPILOT_KAFKA_SASL_PASSWORD=hunter2",),
            "/config/AUTHPILOT_KAFKA_SASL_PASSWORD",
        ),
        (("config.AUTHPILOT_WEB_PORT=8080",), "/config/AUTHPILOT_WEB_PORT"),
        (("config.kafka_bootstrap=x:1",), "'kafka_bootstrap' not allowed"),
        (("persistence.size=10GB",), "/persistence/size"),
        (("models.source=volume",), "/models/existingClaim"),
        (("kafka.securityProtocol=SASL_SSL", "kafka.sasl.mechanism=PLAIN"), "existingSecret"),
        (("kafka.securityProtocol=SASL_SSL", "kafka.sasl.existingSecret=s"), "mechanism"),
        (("kafka.tls.existingSecret=ca",), "SSL"),
        (("replicaCount=2", "standbyReplicas=2"), "standbyReplicas"),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(v),
)
def test_bad_values_are_rejected(tools, sets, message):
    res = template(tools, sets=sets, check=False)
    assert res.returncode != 0, f"{sets} rendered:\n{res.stdout[:500]}"
    assert message in res.stderr, res.stderr


def test_prometheus_rule_is_the_alerts_file(tools):
    docs = docs_of(template(tools, sets=("prometheusRule.enabled=true",)).stdout)
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((FILES / "alerts.yaml").read_text())


def test_dashboard_configmap_is_the_dashboard_file(tools):
    docs = docs_of(template(tools, sets=("grafanaDashboard.enabled=true",)).stdout)
    cm = next(d for d in docs if d["metadata"]["name"] == "rel-authpilot-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["authpilot.json"]) == json.loads(
        (FILES / "dashboard.json").read_text()
    )


# --- alert rules -------------------------------------------------------------------------------


def test_promtool_checks_and_unit_tests_the_alert_rules(tools):
    promtool = tools["PROMTOOL"]
    run([promtool, "check", "rules", str(FILES / "alerts.yaml")])
    out = run([promtool, "test", "rules", str(FILES / "alerts-tests.yaml")]).stdout
    assert "SUCCESS" in out, out


def test_every_alert_is_tested_firing_and_silent():
    tests = yaml.safe_load((FILES / "alerts-tests.yaml").read_text())["tests"]
    groups = yaml.safe_load((FILES / "alerts.yaml").read_text())["groups"]
    alerts = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
    wanted = {"ConsumerLagHigh", "DeadLetterRateHigh", "DecisionLatencyP99High", "DriftAlarm",
              "ModelLoadFailure", "NoDecisions", "MetricsAbsent"}  # fmt: skip
    assert {f"Authpilot{w}" for w in wanted} <= set(alerts)
    for alert in alerts:
        cases = [c for t in tests for c in t["alert_rule_test"] if c["alertname"] == alert]
        assert any(c.get("exp_alerts") for c in cases), f"{alert} never tested firing"
        assert any(not c.get("exp_alerts") for c in cases), f"{alert} never tested silent"


# --- metric names ------------------------------------------------------------------------------

_NOT_METRICS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan", "le",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not functions,
    aggregations, keywords, label names in grouping clauses, or inside strings/matchers."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\{[^{}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\[\]]*\]", " ", e)  # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w:.$])[A-Za-z_:][\w:]*", e):
        if e[m.end() :].lstrip().startswith("("):
            continue  # function or aggregation (a metric name never precedes "(")
        if m.group().lower() not in _NOT_METRICS:
            names.add(m.group())
    return names


def test_metric_name_parser():
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, topic) (rate(a_bucket{x="b_c",y=~"d"}[5m])))'
        " > 1e-3 unless on () b offset 15m or vector(0) and absent(c_total) == bool 1"
    ) == {"a_bucket", "b", "c_total"}
    assert metric_names('count by (name) (m_info{ns=~"a|b"} == 1)') == {"m_info"}
    assert _dashboard_exprs({"panels": [], "templating": {"list": [
        {"query": {"query": "label_values(m_bucket, namespace)"}}]}}) == ["m_bucket"]  # fmt: skip
    assert metric_names('sum(rate(x[$__rate_interval])) / ignoring(le) y{namespace=~"$ns"}') == {
        "x",
        "y",
    }


def _dashboard_exprs(dash: dict) -> list[str]:
    exprs = []
    for p in dash["panels"]:
        exprs += [t["expr"] for t in p.get("targets", [])]
        for sub in p.get("panels", []):
            exprs += [t["expr"] for t in sub.get("targets", [])]
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else q or ""
        m = re.match(r"\s*(label_values|query_result)\((.*)\)\s*$", q, re.S)
        if m and m.group(1) == "label_values":
            exprs.append(m.group(2).rsplit(",", 1)[0] if "," in m.group(2) else m.group(2))
        elif m:
            exprs.append(m.group(2))
    return exprs


def test_alerts_and_dashboard_use_only_the_metric_contract():
    listed = (FILES / "metrics.txt").read_text().split()
    assert len(listed) == len(set(listed)) and set(listed) == CONTRACT
    groups = yaml.safe_load((FILES / "alerts.yaml").read_text())["groups"]
    rule_exprs = [str(r["expr"]) for g in groups for r in g["rules"]]
    dash_exprs = _dashboard_exprs(json.loads((FILES / "dashboard.json").read_text()))
    assert len(dash_exprs) >= 10
    used_alerts = set().union(*map(metric_names, rule_exprs))
    used_dash = set().union(*map(metric_names, dash_exprs))
    assert used_alerts <= CONTRACT, used_alerts - CONTRACT
    assert used_dash <= CONTRACT, used_dash - CONTRACT
    assert used_dash == CONTRACT, f"dashboard shows no panel for {CONTRACT - used_dash}"


def test_metric_contract_matches_the_worker_registry():
    from app.monitoring.metrics import METRIC_NAMES  # the families the worker registers

    exposed = {n for m in METRIC_NAMES for n in (m, f"{m}_total", f"{m}_bucket")}
    assert exposed >= CONTRACT, CONTRACT - exposed


def test_dashboard_is_valid_grafana_json():
    dash = json.loads((FILES / "dashboard.json").read_text())
    assert dash["uid"] == "authpilot" and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        pos = p["gridPos"]
        assert {"h", "w", "x", "y"} <= set(pos) and pos["x"] + pos["w"] <= 24, p["title"]
        assert p["targets"] and all(t["refId"] for t in p["targets"])


# --- image -------------------------------------------------------------------------------------


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_shape():
    ins = _instructions(DOCKER / "Dockerfile")
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS builder")
    args = dict(rest.split("=", 1) for word, rest in ins if word == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    final_words = dict(final)  # last value per instruction in the runtime stage
    assert final_words["USER"].split(":")[0] == "10001"
    assert json.loads(final_words["ENTRYPOINT"]) == ["authpilot"]
    assert json.loads(final_words["CMD"]) == ["worker"]
    assert any("--from=builder /opt/authpilot" in rest for w, rest in final if w == "COPY")
    assert not any("gcc" in rest for w, rest in final if w == "RUN"), "no compilers at runtime"
    builder = ins[: max(i for i, (w, _) in enumerate(ins) if w == "FROM")]
    assert any("gcc" in rest for w, rest in builder if w == "RUN")
    # the ring kernel is compiled in the builder, into the venv the runtime copies and reads
    assert any("authpilot features kernel" in rest for w, rest in builder if w == "RUN")
    kernel_dirs = {
        stage: {rest for w, rest in part if w == "ENV" for rest in rest.split()
                if rest.startswith("AUTHPILOT_KERNEL_DIR=")}
        for stage, part in (("builder", builder), ("runtime", final))
    }  # fmt: skip
    assert (
        kernel_dirs["builder"]
        == kernel_dirs["runtime"]
        == {"AUTHPILOT_KERNEL_DIR=/opt/authpilot/kernels"}
    )
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    for needed in (
        "pyproject.toml",
        "app",
        "schemas",
        "compiled_models",
        "helm/docker/compile-models.sh",
    ):
        assert f"!{needed}" in ignore, needed
    copied = [rest.split()[0] for w, rest in builder if w == "COPY" and "--from" not in rest]
    for src in copied:
        assert (REPO / src).exists(), f"COPY {src}: missing from the repository"


def test_dockerfile_parses_and_passes_buildkit_checks(tools, tmp_path):
    out = run([tools["DOCKERFILE_CHECK"], str(DOCKER / "Dockerfile")]).stdout
    assert "2 stages [builder runtime]" in out and "0 problems" in out, out
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim as Builder\nRUN true\n")  # casing checks
    assert run([tools["DOCKERFILE_CHECK"], str(bad)], check=False).returncode != 0
    bad.write_text("FROM python:3.11-slim\nRUNN true\n")
    assert run([tools["DOCKERFILE_CHECK"], str(bad)], check=False).returncode != 0


def _fake_authpilot(tmp_path: Path, with_rebuild: bool) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    help_text = "--rebuild DIR" if with_rebuild else "--model DIR"
    script = bin_dir / "authpilot"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$2" = --help ]; then echo "{help_text}"; exit 0; fi\n'
        f'echo "$@" >> "{tmp_path}/calls"\n'
    )
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize("with_rebuild", [True, False])
def test_image_model_compile_step(tmp_path, with_rebuild):
    step = DOCKER / "compile-models.sh"
    env = _fake_authpilot(tmp_path, with_rebuild)
    models = tmp_path / "compiled_models"
    models.mkdir()
    (models / "README.md").write_text("no models yet")
    res = subprocess.run(["sh", str(step), str(models)], env=env, capture_output=True, text=True)
    assert res.returncode == 0 and "0 model(s)" in res.stdout, res.stderr  # no models: no-op
    assert not (tmp_path / "calls").exists()
    for version in ("v1", "v2"):
        d = models / "approve" / version
        d.mkdir(parents=True)
        (d / "manifest.json").write_text("{}")
    res = subprocess.run(["sh", str(step), str(models)], env=env, capture_output=True, text=True)
    if with_rebuild:
        assert res.returncode == 0, res.stderr
        calls = (tmp_path / "calls").read_text().splitlines()
        assert calls == [
            f"compile --rebuild {models}/approve/v1",
            f"compile --rebuild {models}/approve/v2",
        ]
    else:
        assert res.returncode != 0 and "ALLOW_PREBUILT_MODELS" in res.stderr
        env["ALLOW_PREBUILT_MODELS"] = "1"
        res = subprocess.run(
            ["sh", str(step), str(models)], env=env, capture_output=True, text=True
        )
        assert res.returncode == 0 and "2 model(s)" in res.stdout


def test_dashboard_queries_are_valid_promql(tools, tmp_path):
    """promtool parses every dashboard query (as a recording rule), Grafana variables filled."""
    dash = json.loads((FILES / "dashboard.json").read_text())
    exprs = [e.replace("$namespace", ".*") for e in _dashboard_exprs(dash)]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"authpilot:dashboard_query:{i}", "expr": e} for i, e in enumerate(exprs)
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    out = run([tools["PROMTOOL"], "check", "rules", str(path)]).stdout
    assert f"SUCCESS: {len(exprs)} rules found" in out, out


def test_retrain_cronjobs_and_the_model_cache(tools):
    """retrain.enabled renders the scheduled and the alert-triggered pipeline as CronJobs that
    validate offline; workers get the MLflow server and a writable cache for fetched models;
    without a tracking URI the render fails with the reason."""
    sets = ("retrain.enabled=true", "mlflow.trackingUri=http://mlflow.ml:5000",
            "retrain.extraArgs={--trainer,xgboost}")  # fmt: skip
    text = template(tools, sets=sets).stdout
    summary = _summary(kubeconform(tools, text))
    assert summary["invalid"] == summary["errors"] == summary["skipped"] == 0, summary
    docs = docs_of(text)
    jobs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CronJob"}
    assert set(jobs) == {"rel-authpilot-retrain", "rel-authpilot-retrain-on-alert"}
    for name, job in jobs.items():
        pod = job["spec"]["jobTemplate"]["spec"]["template"]
        (c,) = pod["spec"]["containers"]
        assert c["args"][:3] == ["retrain", "--from-topics", "--work"]
        assert ("--if-alert" in c["args"]) == name.endswith("on-alert")
        assert c["args"][-2:] == ["--trainer", "xgboost"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/work", "/tmp"}
        # not selected by the workers' PDB / Services / NetworkPolicy
        assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "authpilot-retrain"
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
    cm = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rel-authpilot"
    )
    assert cm["data"]["AUTHPILOT_MLFLOW_TRACKING_URI"] == "http://mlflow.ml:5000"
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    (w,) = sts["spec"]["template"]["spec"]["containers"]
    cache = cm["data"]["AUTHPILOT_MODEL_CACHE_DIR"]
    assert {m["mountPath"]: m["name"] for m in w["volumeMounts"]}[cache] == "model-cache"
    assert not [d for d in docs_of(template(tools).stdout) if d["kind"] == "CronJob"]
    res = template(tools, sets=("retrain.enabled=true",), check=False)
    assert res.returncode != 0 and "needs mlflow.trackingUri" in res.stderr

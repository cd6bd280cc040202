"""`authpilot retrain`: export -> features -> train -> compile -> gate 1 -> register ->
challenger (shadow) -> gate 2 -> champion. Every run is an MLflow run of `authpilot-retrain`.

One invocation does one stage, so a CronJob never sleeps through a shadow window:
- shadow stage: when a challenger has shadowed for shadow_window_s (the registry version's
  `authpilot.challenger_since` tag), read the shadow log from Kafka, apply gate 2, and either
  promote it champion (alias and control topic) or retire it (its alias removed, the version
  tagged with the reasons);
- train stage: otherwise (no challenger, or `--stage train`), train a candidate on the
  exported production history (or a given log), compare it with the champion on the latest
  window (app.lifecycle.evaluate), apply gate 1, register it either way (a refused version is
  kept, tagged `authpilot.gate=refused` with the reasons, so the refusal can be inspected), and
  promote a passing one as challenger.
The first model (no champion in the registry) goes straight to champion when it passes gate 1:
there is nothing to shadow it against.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from app.config import Settings
from app.lifecycle import registry, tracking
from app.lifecycle.gates import (
    Gates,
    ModelFigures,
    ShadowFigures,
    Verdict,
    offline_gate,
    shadow_gate,
)

if TYPE_CHECKING:
    from app.experiments.shadow import ChallengerStats
    from app.lifecycle.evaluate import Evaluation
    from app.models.serving.scoring import CompiledModel

Stage = Literal["auto", "train", "shadow"]
SINCE_TAG = "authpilot.challenger_since"
GATE_TAG = "authpilot.gate"


class PipelineError(RuntimeError):
    """The pipeline could not run (no data, no broker, no registry); nothing was promoted."""


@dataclass(frozen=True)
class RetrainOptions:
    log: Path | None = None
    from_topics: bool = False
    history: tuple[Path, ...] = ()  # more event logs trained on with the log or the export
    work: Path = Path("var/retrain")
    name: str = "router"
    trainer: str = "lightgbm"
    rounds: int = 1000
    params: dict[str, Any] = field(default_factory=dict)  # over the trainer's defaults
    shadow_window_s: float = 3600.0
    stage: Stage = "auto"
    promote: bool = True
    gates: Gates = field(default_factory=Gates)
    if_alert: bool = False
    version: str | None = None  # default: r<UTC timestamp>


@dataclass(frozen=True)
class RetrainResult:
    ok: bool  # False: a gate refused
    action: str  # trained-refused | challenger | champion | retired | waiting | skipped
    version: str | None
    summary: str
    run_id: str | None = None


def _say(msg: str) -> None:
    print(f"[retrain] {msg}", file=sys.stderr, flush=True)


def retrain(s: Settings, o: RetrainOptions) -> RetrainResult:
    if o.if_alert:
        from app.lifecycle.alerts import fired_since_last_run

        fired = fired_since_last_run(s)
        if not fired:
            return RetrainResult(True, "skipped", None, "no model-fallback or drift alert "
                                 "since the last run; nothing to do")  # fmt: skip
        _say(f"triggered by {len(fired)} alert(s): {fired[0]}")
    challenger = registry.by_alias(s, o.name, "challenger")
    if o.stage != "train" and challenger is not None:
        since = float(challenger.tags.get(SINCE_TAG, "0")) / 1000
        age = time.time() - since
        if o.stage == "shadow" or age >= o.shadow_window_s:
            return _judge_shadow(s, o, challenger, since)
        left = o.shadow_window_s - age
        return RetrainResult(True, "waiting", challenger.version,
                             f"challenger {o.name}/{challenger.version} is shadowing: "
                             f"{age:.0f} s of {o.shadow_window_s:.0f} s; gate 2 in "
                             f"{left:.0f} s")  # fmt: skip
    if o.stage == "shadow":
        raise PipelineError(f"no challenger of {o.name} in the registry to judge")
    return _train(s, o)


# ------------------------------------------------------------------------------ train stage
def _train(s: Settings, o: RetrainOptions) -> RetrainResult:
    from app.contracts.ingest import LogRejected
    from app.features.offline import write_matrix
    from app.lifecycle.evaluate import evaluate
    from app.models.training.compile import compile_from_train_dir
    from app.models.training.train import run as train_run

    version = o.version or time.strftime("r%Y%m%d%H%M%S", time.gmtime())
    work = o.work / "runs" / version
    with tracking.run(
        s,
        "retrain",
        f"retrain {o.name}/{version}",
        {"authpilot.stage": "train", "authpilot.version": version},
    ) as (c, ref):
        log_dir = o.log if o.log is not None else _export(s, o.work / "export")
        if o.history:
            log_dir = union_log((*o.history, log_dir), work / "log")
        tracking.log_all(c, ref.run_id, {"log": str(log_dir), "trainer": o.trainer,
                                         "rounds": o.rounds, **o.gates.to_dict()})  # fmt: skip
        _say(f"features from {log_dir}")
        try:
            built = write_matrix(log_dir, work / "matrix.parquet")
        except LogRejected as exc:
            raise PipelineError(f"the log breaks the ingest contract:\n{exc.report.render()}"
                                ) from exc  # fmt: skip
        _say(f"{built.rows:,} training rows; training {o.trainer}")
        summary = train_run(built.path, work / "train", o.name, version, trainer=o.trainer,
                            rounds=o.rounds, params=o.params)  # fmt: skip
        tracking.log_train_dir(s, work / "train")
        manifest = compile_from_train_dir(work / "train", s.model_dir, matrix=built.path)
        cand_dir = manifest.parent
        champ_reg = registry.by_alias(s, o.name, "champion")
        champ = _load_champion(s, champ_reg)
        from app.features.definitions import feature_hash
        from app.models.serving.scoring import CompiledModel

        cand = CompiledModel(cand_dir, feature_hash())
        _say("evaluating against "
             + (f"champion {champ.label}" if champ is not None else "no champion"))  # fmt: skip
        e = evaluate(log_dir, built.path, int(summary["test_window_ms"][0]), cand, champ,
                     s.ev_margin_bps)  # fmt: skip
        verdict = offline_gate(o.gates, e.candidate, e.champion, e.diff, e.baseline_log_loss)
        tracking.log_all(c, ref.run_id, metrics=e.metrics() | {"gate1.passed": verdict.passed})
        reg = registry.register(s, cand_dir, _train_run_id(work / "train"))
        _tag_version(s, o.name, reg.mlflow_version, {
            GATE_TAG: "passed" if verdict.passed else "refused",
            "authpilot.gate1": verdict.render()[:5000]})  # fmt: skip
        report = _report(o.name, version, e, verdict, champ_reg)
        (work / "gate1.md").write_text(report)
        c.log_text(ref.run_id, report, "gate1.md")
        if not verdict.passed:
            return RetrainResult(False, "trained-refused", version,
                                 f"refused {o.name}/{version}: " + "; ".join(verdict.reasons())
                                 + f"\n{report}", ref.run_id)  # fmt: skip
        role = "challenger" if champ_reg is not None else "champion"
        if o.promote:
            _promote(s, o.name, version, role)
            if role == "challenger":
                _tag_version(s, o.name, reg.mlflow_version,
                             {SINCE_TAG: str(int(time.time() * 1000))})  # fmt: skip
        tracking.log_all(c, ref.run_id, tags={"authpilot.action": role})
        what = f"promoted {role}" if o.promote else f"not promoted {role} (--no-promote)"
        return RetrainResult(True, role if o.promote else "registered", version,
                             f"{o.name}/{version} passed gate 1: {what}\n{report}",
                             ref.run_id)  # fmt: skip


def union_log(sources: tuple[Path, ...], out: Path) -> Path:
    """One event log of several (a backfilled history and the export, say): every source's
    table files symlinked as parts of out/<table>/, which readers search recursively. The
    ingest check then sees the union, duplicates across sources included."""
    from app.contracts.ingest import TABLE_NAMES

    for table in TABLE_NAMES:
        for i, src in enumerate(sources):
            single = src / f"{table}.parquet"
            parts = [single] if single.is_file() else sorted((src / table).rglob("*.parquet"))
            for j, part in enumerate(parts):
                if part.name.startswith(("_", ".")):
                    continue
                link = out / table / f"s{i}-{j:05d}.parquet"
                link.parent.mkdir(parents=True, exist_ok=True)
                link.unlink(missing_ok=True)
                link.symlink_to(part.resolve())
    return out


def _train_run_id(train_dir: Path) -> str | None:
    got = json.loads((train_dir / "metrics.json").read_text()).get("mlflow_run_id")
    return str(got) if got else None


def _export(s: Settings, out: Path) -> Path:
    from app.lifecycle.export import export_topics

    _say(f"exporting the worker's history from Kafka to {out}")
    try:
        export_topics(s, out, progress=_say)
    except ValueError as exc:  # ReportError / ExportError
        raise PipelineError(str(exc)) from exc
    return out


def _load_champion(s: Settings, reg: registry.Registered | None) -> CompiledModel | None:
    """The champion's compiled model, fetched from the artifact store when not on disk."""
    if reg is None:
        return None
    from app.features.definitions import feature_hash
    from app.models.artifact import ModelRejected
    from app.models.serving.scoring import CompiledModel

    path = registry.local_copy(s, reg.source, reg.name, reg.version)
    try:
        return CompiledModel(path, feature_hash())
    except ModelRejected as exc:
        _say(f"champion {reg.name}/{reg.version} does not load here ({exc}); "
             "judging the candidate alone")  # fmt: skip
        return None


def _tag_version(s: Settings, name: str, mlflow_version: str, tags: dict[str, str]) -> None:
    c = tracking.client(s)
    for k, v in tags.items():
        c.set_model_version_tag(name, mlflow_version, k, v)


def _promote(s: Settings, name: str, version: str, role: str) -> None:
    """Alias, then control topic (the alias moved back if the topic write fails)."""
    from app.models.serving.registry import promote

    reg, before = registry.set_alias(s, name, version, role)
    try:
        promote(s, name, version, role, registry.record_fields(reg))
    except Exception as exc:
        registry.restore_alias(s, name, role, before)
        raise PipelineError(f"control topic not written ({exc}); alias @{role} restored") from exc
    _say(f"{name}/{version} is @{role} and promoted on {s.topic_control}")


def _retire(s: Settings, ch: registry.Registered) -> None:
    from app.models.serving.registry import retire

    registry.delete_alias(s, ch.name, "challenger")
    retire(s, ch.name)


def _report(name: str, version: str, e: Evaluation, verdict: Verdict,
            champ: registry.Registered | None) -> str:  # fmt: skip
    def row(who: str, f: ModelFigures) -> str:
        return f"| {who} | {f.log_loss:.4f} | {f.ece:.4f} | {f.value:.2f} |"

    lines = [f"# Gate 1: {name}/{version}", "",
             f"Latest window: {e.rows:,} attempts, {e.off_policy_rows:,} with a logged "
             f"propensity; success-rate baseline log loss {e.baseline_log_loss:.4f}.", "",
             "| model | log loss | ECE | off-policy value / attempt |", "|---|---|---|---|",
             row(f"candidate {version}", e.candidate)]  # fmt: skip
    if e.champion is not None and champ is not None:
        lines.append(row(f"champion {champ.version}", e.champion))
    if e.diff is not None:
        lines += ["", f"Value difference (candidate - champion, paired doubly robust): "
                  f"{e.diff.diff:+.2f} [{e.diff.lo:+.2f}, {e.diff.hi:+.2f}] per attempt, on "
                  f"{e.diff.effective_n:.0f} informative attempts."]  # fmt: skip
    lines += ["", verdict.render(), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- shadow stage
def _judge_shadow(s: Settings, o: RetrainOptions, ch: registry.Registered,
                  since: float) -> RetrainResult:  # fmt: skip
    from app.experiments.eventlog import EventLog, ReportError
    from app.experiments.kafka_log import read_kafka
    from app.experiments.shadow import shadow_report

    label = f"{ch.name}/{ch.version}"
    with tracking.run(
        s,
        "retrain",
        f"shadow gate {label}",
        {"authpilot.stage": "shadow", "authpilot.version": ch.version},
    ) as (c, ref):
        try:
            log = read_kafka(s, need_shadow=True, progress=_say)
        except ReportError as exc:
            raise PipelineError(str(exc)) from exc
        since_ms = since * 1000
        d = log.decisions[log.decisions["decided_at"] >= since_ms]
        sh = log.shadow[log.shadow["decided_at"] >= since_ms]
        window = EventLog(d, log.outcomes, sh, log.dropped, log.source)
        try:
            stats = shadow_report(window, label).challengers[0]
        except ReportError as exc:
            stats = None
            _say(f"no shadow evidence: {exc}")
        f = _shadow_figures(stats)
        verdict = shadow_gate(o.gates, f)
        tracking.log_all(c, ref.run_id, metrics={
            "shadow.attempts": float(f.attempts), "shadow.agreement": f.agreement,
            "shadow.ece": f.ece, "shadow.approval": f.approval,
            "shadow.logged_approval": f.logged_approval, "shadow.effective_n": f.effective_n,
            "gate2.passed": float(verdict.passed)})  # fmt: skip
        report = (
            f"# Gate 2: {label} after {time.time() - since:.0f} s in shadow\n\n" + verdict.render()
        )
        c.log_text(ref.run_id, report, "gate2.md")
        _tag_version(s, ch.name, ch.mlflow_version, {"authpilot.gate2": verdict.render()[:5000]})
        if not f.attempts >= o.gates.min_shadow_attempts and verdict.reasons() == [
            f"shadow attempts: {f.attempts} (need {o.gates.min_shadow_attempts})"
        ]:
            return RetrainResult(
                True,
                "waiting",
                ch.version,
                f"{label}: not enough shadow traffic yet\n{report}",
                ref.run_id,
            )
        if not verdict.passed:
            if o.promote:
                _retire(s, ch)
                _tag_version(s, ch.name, ch.mlflow_version, {GATE_TAG: "retired"})
            return RetrainResult(
                False,
                "retired",
                ch.version,
                f"retired {label}: " + "; ".join(verdict.reasons()) + f"\n{report}",
                ref.run_id,
            )
        if o.promote:
            _promote(s, ch.name, ch.version, "champion")
            _retire(s, ch)  # the champion now: shadowing it against itself would waste a score
            _tag_version(s, ch.name, ch.mlflow_version, {GATE_TAG: "champion"})
        return RetrainResult(
            True,
            "champion",
            ch.version,
            f"{label} passed gate 2 and is champion\n{report}",
            ref.run_id,
        )


def _shadow_figures(stats: ChallengerStats | None) -> ShadowFigures:
    if stats is None:
        nan = math.nan
        return ShadowFigures(0, nan, nan, nan, nan, nan, nan, 0.0)
    ci = stats.estimate.ci95("snips")
    return ShadowFigures(
        stats.attempts,
        stats.agreement.mean,
        stats.calibration.ece,
        stats.estimate.snips,
        ci.lo,
        ci.hi,
        stats.logged_approval.mean,
        stats.estimate.effective_n,
    )

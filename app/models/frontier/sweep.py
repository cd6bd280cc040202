"""`authpilot sweep`: a grid of router models on one split, each measured for quality, value
in the closed loop and latency through the serving call, then the frontier and a champion.

Steps (progress on stderr): the evaluator's history and training matrix (app.evaluation.prepare,
cached), the same time split as `train`; per candidate of the matrix (app/data/sweep/*.json or
a file): train (GBDTs early-stop on the validation window), calibrate on validation, compile
the tree models with Treelite + TL2cgen (their library is what the timing and the closed loop
call), score the test window (log loss, ECE, ROC/PR AUC), run the expected-value router with it
over the same simulated payments as the oracle and the best-single-route router (shares of the
oracle's uplift; value per 1,000 requests: margin on approvals minus fees), and time one
4-route request and batches of 32 requests through `score_many`, as ratios to the raw compiled
call of the evaluator's default model measured in the same run. Every candidate is an MLflow
run of `authpilot-sweep`; the recommendation under --budget-us is registered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.config import Settings
from app.features.definitions import FEATURE_NAMES, feature_hash
from app.models.frontier.dense import DenseModel, fit_logistic, fit_mlp
from app.models.frontier.frontier import Figures, pareto_front, recommend
from app.routing.protocols import Scorer

SWEEP_DIR = Path(__file__).resolve().parents[2] / "data" / "sweep"
Say = Callable[[str], None]
BATCH = 32  # requests per batched call, 4 candidate routes each


@dataclass(frozen=True)
class Candidate:
    name: str
    family: str  # lightgbm | xgboost | logistic | mlp
    rounds: int = 1000
    params: dict[str, Any] = field(default_factory=dict)


def load_matrix(spec: str) -> list[Candidate]:
    """A preset of app/data/sweep (`default`, `small`) or a JSON file of the same shape."""
    path = SWEEP_DIR / f"{spec}.json" if (SWEEP_DIR / f"{spec}.json").exists() else Path(spec)
    if not path.exists():
        presets = sorted(p.stem for p in SWEEP_DIR.glob("*.json"))
        raise ValueError(f"--matrix {spec}: neither a preset ({', '.join(presets)}) nor a file")
    raw = json.loads(path.read_text())
    out = [Candidate(c["name"], c["family"], int(c.get("rounds", 1000)), dict(c.get("params", {})))
           for c in raw["candidates"]]  # fmt: skip
    bad = [c.name for c in out if c.family not in ("lightgbm", "xgboost", "logistic", "mlp")]
    if bad or len({c.name for c in out}) != len(out):
        raise ValueError(f"{path}: unknown family in {bad} or a repeated candidate name")
    return out


@dataclass(frozen=True)
class SweepConfig:
    scenario: str = "steady"
    matrix: str = "default"
    out: Path = Path("var/sweep")
    work: Path = Path("var/eval-cache")
    history_attempts: int = 200_000
    history_days: float = 21.0
    eval_days: float = 7.0
    history_seed: int = 1
    payments: int = 5_000
    seed: int = 1
    budget_us: float = 50.0
    reps: int = 3_000  # timed calls per variant
    track: bool = True


@dataclass(frozen=True)
class SweepResult:
    figures: list[Figures]
    front: list[Figures]
    recommended: Figures | None
    reference_us: float  # the raw compiled call's median, one 4-row request
    report: Path
    registered: str | None


def _fit(c: Candidate, split: Any) -> tuple[Any, Callable[[np.ndarray], np.ndarray]]:
    """(trained model, raw probability function) of one candidate on the split."""
    from app.models.training.frameworks import FRAMEWORKS
    from app.models.training.train import TRAINERS, features

    xtr, ytr = features(split.train), split.train.approved.to_numpy(float)
    if c.family in FRAMEWORKS:
        booster = TRAINERS[c.family](split, rounds=c.rounds, params=c.params, show=False)
        fw = FRAMEWORKS[c.family]
        return booster, lambda x: fw.predict(booster, x)
    if c.family == "logistic":
        m = fit_logistic(xtr, ytr, l2=float(c.params.get("l2", 1e-3)), label=f"sweep/{c.name}")
    else:
        xva, yva = features(split.valid), split.valid.approved.to_numpy(float)
        m = fit_mlp(xtr, ytr, hidden=int(c.params.get("hidden", 32)),
                    epochs=int(c.params.get("epochs", 12)), x_valid=xva, y_valid=yva,
                    label=f"sweep/{c.name}")  # fmt: skip
    return m, lambda x: m.raw(x, np.empty(len(x)))


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(cfg: SweepConfig, s: Settings, say: Say = print) -> SweepResult:
    from app.bench.model import measure, raw_reference
    from app.evaluation.loop import eval_payments, run_policy
    from app.evaluation.policies import DispatchRouter, StaticModels
    from app.evaluation.prepare import prepare, warm_state
    from app.evaluation.report import per_payment, pooled
    from app.experiments.stats import mean_ci
    from app.models.calibration import choose
    from app.models.serving.scoring import CompiledModel
    from app.models.training import evaluate as ev
    from app.models.training.compile import compile_model
    from app.models.training.train import features, masked, time_split
    from app.retry import registry as retry_registry
    from app.retry.engine import RetryParams, load_recovery
    from app.retry.rules import NetworkRules
    from app.routing import best_single, oracle
    from app.sim.truth import true_p

    cands = load_matrix(cfg.matrix)
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    prep = prepare(cfg.scenario, cfg.work, cfg.history_days, cfg.history_attempts,
                   cfg.history_seed, say=say)  # fmt: skip
    root = prep.model_dir.parents[2]
    split = time_split(masked(pd.read_parquet(root / "train.parquet")))  # as train.run does
    xte, yte = features(split.test), split.test.approved.to_numpy(float)
    yva = split.valid.approved.to_numpy(float)
    say(f"split: train {len(split.train):,} valid {len(split.valid):,} test {len(split.test):,}")
    state = warm_state(prep, s.sr_window, say=say)
    margin = s.ev_margin_bps
    es = s.model_copy(update={"best_routes": prep.best_routes})
    rules = NetworkRules(s.visa_rules_variant)
    retrier = retry_registry.build(
        "engine",
        rules,
        RetryParams(
            margin, s.retry_attempt_cost_minor, recovery=load_recovery(None, s.retry_pay_calendar)
        ),
    )
    pays = eval_payments(prep.world, cfg.history_days, cfg.history_days + cfg.eval_days,
                         cfg.payments, cfg.seed)  # fmt: skip
    oracle_p = true_p(prep.world)

    def closed_loop(policy: str, scorer: Scorer | None) -> dict[str, np.ndarray]:
        router = DispatchRouter(policy, es, state.copy(), StaticModels(scorer), oracle_p)
        r = run_policy(prep.world, pays, router, retrier, rules, cfg.seed)
        return per_payment(pooled([r]), margin)

    say(f"closed loop baselines on {len(pays):,} payments: oracle, best single route")
    cols_o = closed_loop(oracle.POLICY_NAME, None)
    cols_s = closed_loop(best_single.POLICY_NAME, None)
    base_o, base_s = ({k: float(c[k].mean()) for k in ("first_approval", "net_value")}
                      for c in (cols_o, cols_s))  # fmt: skip

    # the latency reference: the raw generated predict() of the evaluator's default model
    req = np.ascontiguousarray(xte[:4])
    ref_fn, _ = raw_reference(prep.model_dir / "model.so", req)
    xbatch = np.ascontiguousarray(xte[: 4 * BATCH])
    figures: list[Figures] = []
    compiled: dict[str, Path] = {}
    for i, c in enumerate(cands, 1):
        say(f"[{i}/{len(cands)}] {c.name}: train")
        t0 = time.monotonic()
        model, raw_p = _fit(c, split)
        train_s = time.monotonic() - t0
        cal, _ = choose(raw_p(features(split.valid)), yva)
        compile_s = 0.0
        scorer: Scorer
        if c.family in ("lightgbm", "xgboost"):
            say(f"[{i}/{len(cands)}] {c.name}: compile")
            version = f"sweep-{root.name}-{c.name}"
            t0 = time.monotonic()
            compile_model(model, out / "models" / "router" / version, name="router",
                          version=version, feature_names=list(FEATURE_NAMES),
                          feature_hash=feature_hash(), calibration=cal,
                          test_matrix=np.ascontiguousarray(xte[:8]))  # fmt: skip
            compile_s = time.monotonic() - t0
            compiled[c.name] = out / "models" / "router" / version
            scorer = CompiledModel(compiled[c.name], feature_hash())
            size = _dir_bytes(compiled[c.name])
        else:
            dense: DenseModel = model
            dense.calibration = cal
            scorer = dense
            np.savez(out / f"{c.name}.npz", w1=dense.w1, b1=dense.b1,
                     w2=dense.w2 if dense.w2 is not None else np.zeros(0))  # fmt: skip
            size = (out / f"{c.name}.npz").stat().st_size
        p = scorer.score_many(np.ascontiguousarray(xte), np.empty(len(xte)))
        m = ev.metrics(yte, p)
        say(f"[{i}/{len(cands)}] {c.name}: log loss {m['log_loss']:.4f}; timing; closed loop")
        pbuf = np.empty(4 * BATCH)
        t = measure({"ref": ref_fn, "one": partial(scorer.score_many, req, pbuf, 4),
                     "batch": partial(scorer.score_many, xbatch, pbuf, 4 * BATCH)},
                    cfg.reps)  # fmt: skip
        ref_us = float(np.median(t["ref"]))
        col = closed_loop("expected_value", scorer)
        loop = {k: float(col[k].mean()) for k in ("first_approval", "net_value")}
        paired = mean_ci(col["net_value"] - cols_s["net_value"])  # same payments and draws
        up_o = base_o["first_approval"] - base_s["first_approval"]
        vo = base_o["net_value"] - base_s["net_value"]
        f = Figures(
            c.name, c.family, c.family in ("lightgbm", "xgboost"), m["log_loss"], m["ece"],
            m["roc_auc"], m["pr_auc"],
            (loop["first_approval"] - base_s["first_approval"]) / up_o if up_o > 0 else np.nan,
            (loop["net_value"] - base_s["net_value"]) / vo if vo > 0 else np.nan,
            loop["net_value"] * 1000, (paired.hi - paired.mean) * 1000, float(np.median(t["one"])),
            float(np.percentile(t["one"], 99)), float(np.median(t["batch"])) / BATCH,
            float(np.median(t["one"])) / ref_us, size, train_s, compile_s,
            {"rounds": c.rounds, **c.params},
        )  # fmt: skip
        figures.append(f)
        say(f"[{i}/{len(cands)}] {c.name}: value share {f.value_share:.0%}, p50 {f.p50_us:.1f} us"
            f" ({f.ratio_p50:.1f}x raw), p99 {f.p99_us:.1f} us")  # fmt: skip
    ref_all = float(np.median(measure({"ref": ref_fn}, cfg.reps)["ref"]))
    front = pareto_front(figures)
    rec = recommend(figures, cfg.budget_us)
    from app.models.frontier.report import write_report

    baselines = {"oracle": base_o, "best single route": base_s}
    report = write_report(out, cfg, figures, front, rec, ref_all, baselines)
    registered = _track(s, cfg, figures, rec, compiled, root.name) if cfg.track else None
    (out / "sweep.json").write_text(json.dumps({
        "config": {k: str(v) for k, v in cfg.__dict__.items()}, "reference_us": ref_all,
        "figures": [f.to_dict() for f in figures], "front": [f.name for f in front],
        "recommended": rec.to_dict() if rec else None, "registered": registered},
        indent=1, default=float))  # fmt: skip
    return SweepResult(figures, front, rec, ref_all, report, registered)


def _track(s: Settings, cfg: SweepConfig, figures: list[Figures], rec: Figures | None,
           compiled: dict[str, Path], key: str) -> str | None:  # fmt: skip
    """One MLflow run per candidate in authpilot-sweep; the recommended one registered."""
    from app.lifecycle import registry, tracking

    registered = None
    for f in figures:
        tags = {"authpilot.sweep": key, "authpilot.family": f.family,
                "authpilot.recommended": str(rec is not None and f.name == rec.name)}  # fmt: skip
        with tracking.run(s, "sweep", f"sweep {f.name}", tags) as (c, ref):
            d = f.to_dict()
            params = {"family": f.family, "scenario": cfg.scenario, **d.pop("params")}
            metrics = {k: float(v) for k, v in d.items() if isinstance(v, int | float)}
            tracking.log_all(c, ref.run_id, params, tracking.flatten("", metrics))
            if rec is not None and f.name == rec.name and f.name in compiled:
                r = registry.register(s, compiled[f.name], ref.run_id)
                registered = f"{r.name}/{r.version} (MLflow version {r.mlflow_version})"
    return registered


def recommended_training(sweep_json: Path) -> tuple[str, int, dict[str, Any]]:
    """(trainer, rounds, params) of the candidate a sweep recommended: what `retrain --sweep`
    trains, so the pipeline uses the frontier's selection."""
    try:
        rec = json.loads(sweep_json.read_text())["recommended"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{sweep_json}: not a sweep.json ({exc})") from exc
    if not rec:
        raise ValueError(f"{sweep_json}: the sweep recommended nothing (no candidate fit)")
    params = dict(rec["params"])
    return str(rec["family"]), int(params.pop("rounds", 1000)), params

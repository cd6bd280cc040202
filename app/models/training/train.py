"""Training matrix -> calibrated LightGBM or XGBoost -> evaluation report.

Target: approved, for an attempt on the route it took. Split by time (train, then validation for
early stopping and calibration, then a later test window for the report), never at random: the
model is used on the future, so it is judged on a later window. Both trainers (`--trainer`) get
the same split, decline weights, calibration choice and report; only fit() differs.

`refit_all` (`--refit-all`): the split chooses the rounds (early stopping) and gives the
report, then the served booster is refitted on every row with those rounds and calibrated on
out-of-fold scores (`refit_on_all`). The split's model never sees the newest 30% of its
history (where the worker's latest choices and explored requests are); the refitted one does,
at a price: the report's test metrics describe the split's model, not the served one (the
summary's `served_model` says which, its out-of-fold figures, and how far the two disagree on
the test window). Off by default, and the lifecycle pipeline never uses it: its promotion gate
compares models on the test window, which a refitted candidate has seen.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from app.contracts.vocab import NETWORKS
from app.features.definitions import FEATURE_NAMES, feature_hash
from app.models.calibration import Calibration, choose
from app.models.training import evaluate as ev
from app.models.training.frameworks import FRAMEWORKS, of_train_dir


@dataclass
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame


def time_split(df: pd.DataFrame, valid: float = 0.15, test: float = 0.15) -> Split:
    """Contiguous time windows: oldest for training, newest for the test report."""
    df = df.sort_values("event_time", kind="mergesort").reset_index(drop=True)
    n = len(df)
    a, b = int(n * (1 - valid - test)), int(n * (1 - test))
    return Split(df.iloc[:a], df.iloc[a:b], df.iloc[b:])


# Features the router model is trained blind to: the aggregate traffic volume. Counts of every
# attempt on a BIN, a merchant or a route in the last hour or day move with the deployment's
# traffic (the hour of day, growth, this worker's share of a merchant's payments), not with an
# issuer's or acquirer's behaviour, and a model fitted at one volume reads another as evidence.
# evaluate-policy's closed loops run at 1/3 to 1/7 of their history's attempts a day. Measured
# there (3 seeds x 10,000 payments, histories 101 / 102 / 103; the four counts read -> ignored):
# steady share of the oracle's first-attempt uplift 69/69/59% -> 75/71/68%, chosen-route
# calibration +0.27/+0.54/+0.93 -> +0.02/-0.06/+0.21 pp; issuer_shift outcomes until 80% on the
# new route, worst seed 548/348/428 -> 356/490/393, share of the uplift from +1 h 66/80/72% ->
# 71/78/74%; acquirer_outage, during, vs static -0.15/+0.35/+0.18 -> +0.07/+0.63/+0.12 pp. At
# the history's own volume (steady, 60,000 payments, history 101) 84% -> 83%. The per-segment
# counts behind the route rates (bin_route_*_n, country_route_*_n, merchant_route_7d_n) are
# evidence weights and stay: ignoring them too read 73% at 10,000 but 81% at 60,000.
IGNORED_FEATURES: tuple[str, ...] = ("bin_1h_n", "bin_24h_n", "merchant_24h_n", "route_1h_n")


def _features_only(names: tuple[str, ...]) -> tuple[str, ...]:
    """`names`, or ValueError naming any that is not a feature."""
    unknown = sorted(set(names) - set(FEATURE_NAMES))
    if unknown:
        raise ValueError(f"unknown feature(s) to ignore: {', '.join(unknown)} (the names are "
                         "app.features.definitions.FEATURE_NAMES)")  # fmt: skip
    return names


def ignored(spec: str | None) -> tuple[str, ...]:
    """The features named by `--ignore-features` (comma-separated; `none`; None: the default
    IGNORED_FEATURES). ValueError names any that is not a feature."""
    if spec is None:
        return IGNORED_FEATURES
    return _features_only(tuple(n.strip() for n in spec.split(",")
                                if n.strip() not in ("", "none")))  # fmt: skip


def masked(df: pd.DataFrame, ignore: tuple[str, ...] = IGNORED_FEATURES) -> pd.DataFrame:
    """`df` with the ignored features missing on every row. No tree can split on a column that
    is missing everywhere, so the model never reads them, while it still takes the full
    FEATURE_NAMES row: the online fill, the feature hash and the compiled ABI are unchanged."""
    ignore = _features_only(tuple(ignore))
    return df.assign(**{c: np.nan for c in ignore}) if ignore else df


DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "num_threads": 2,
    "seed": 7,
}


def fit(split: Split, rounds: int = 1000, params: dict[str, Any] | None = None,
        decline_weight: float = 1.0, show: bool = True) -> lgb.Booster:  # fmt: skip
    """LightGBM with early stopping on the validation window.

    decline_weight > 1 up-weights declined attempts (cost-sensitive: a wasted attempt costs a
    fee and, for retries, network attempt limits). Calibration afterwards restores probabilities.
    """
    p = {**DEFAULT_PARAMS, **(params or {})}
    w = decline_weights(split.train, decline_weight)
    dtr = lgb.Dataset(split.train[list(FEATURE_NAMES)], split.train.approved, weight=w,
                      free_raw_data=False)  # fmt: skip
    dva = lgb.Dataset(split.valid[list(FEATURE_NAMES)], split.valid.approved, reference=dtr)
    callbacks: list[Callable[..., Any]] = [lgb.early_stopping(50, verbose=False)]
    if show:
        callbacks.append(lgb.log_evaluation(100))
    return lgb.train(p, dtr, rounds, valid_sets=[dva], valid_names=["valid"], callbacks=callbacks)


def decline_weights(df: pd.DataFrame, decline_weight: float) -> np.ndarray:
    """Sample weights: 1 for approvals, decline_weight for declines (see fit)."""
    return np.where(df.approved.to_numpy() == 1, 1.0, decline_weight)


def features(df: pd.DataFrame) -> np.ndarray:
    """The model's input matrix (float64, NaN = missing) in FEATURE_NAMES order."""
    return df[list(FEATURE_NAMES)].to_numpy(np.float64)


# The LightGBM defaults translated: leaf-wise growth to 31 leaves (lossguide, no depth limit);
# min_child_weight is a hessian sum, p(1-p) ~ 0.2 per row at a 70% approval rate, so 20 ~ the
# 100 rows of min_data_in_leaf; eta, row/column sampling, L2 and the seed as above.
XGB_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "grow_policy": "lossguide",
    "max_leaves": 31,
    "max_depth": 0,
    "min_child_weight": 20.0,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.9,
    "lambda": 1.0,
    "nthread": 2,
    "seed": 7,
    "verbosity": 0,
}


def fit_xgboost(split: Split, rounds: int = 1000, params: dict[str, Any] | None = None,
                decline_weight: float = 1.0, show: bool = True) -> Any:  # fmt: skip
    """XGBoost with early stopping on the validation window, the same weights as fit.

    Returns the booster sliced to its best round: XGBoost's Booster.predict (and Treelite)
    would otherwise use every tree trained, including the 50 past the best."""
    import xgboost as xgb

    p = {**XGB_PARAMS, **(params or {})}
    w = decline_weights(split.train, decline_weight)
    dtr = xgb.DMatrix(features(split.train), split.train.approved.to_numpy(), weight=w)
    dva = xgb.DMatrix(features(split.valid), split.valid.approved.to_numpy())
    booster = xgb.train(p, dtr, rounds, evals=[(dva, "valid")], early_stopping_rounds=50,
                        verbose_eval=100 if show else False)  # fmt: skip
    return booster[: booster.best_iteration + 1]


TRAINERS: dict[str, Callable[..., Any]] = {"lightgbm": fit, "xgboost": fit_xgboost}


REFIT_FOLDS = 3  # out-of-fold scores for the refitted booster's calibration (refit_on_all)


@dataclass
class Refitted:
    """`refit_all`'s served model: the booster on every row, its cross-fitted calibration and
    the out-of-fold figures that calibration came from."""

    booster: Any
    calibration: Calibration
    oof: dict[str, float]  # out-of-fold log loss, ECE, mean p and approval, calibrated


def refit_on_all(fit_rows: Callable[[np.ndarray], Any],
                 predict: Callable[[Any, np.ndarray], np.ndarray], y: np.ndarray,
                 folds: int = REFIT_FOLDS) -> Refitted:  # fmt: skip
    """The served model of `refit_all`, for any booster: `fit_rows(rows)` trains on those rows
    (an index array in time order) with the split's rounds and no early stopping, `predict(
    booster, rows)` scores them raw. Every row is scored by a booster trained on the other
    folds (interleaved in time, so each spans the whole window like the served one) and the
    calibration is chosen on those scores, as the split chooses it on its validation window.
    The split's own calibration cannot be reused: it maps the split booster's scores and, fitted
    on a newer window, also corrects that booster's staleness, which the refitted one has not
    got (measured: a world inverted in its newest 30% made the split's Platt map decreasing;
    applied to the refitted booster it sent 0.98 to 6e-8)."""
    n = len(y)
    idx = np.arange(n)
    raw = np.empty(n)
    for f in range(folds):
        held = idx % folds == f
        raw[held] = predict(fit_rows(idx[~held]), idx[held])
    yf = y.astype(float)
    cal, _ = choose(raw, yf)
    p = cal.apply(raw.copy())
    m = ev.metrics(yf, p)
    oof = {"log_loss": m["log_loss"], "ece": m["ece"], "mean_p": float(p.mean()),
           "approval": float(yf.mean())}  # fmt: skip
    return Refitted(fit_rows(idx), cal, oof)


def best_rounds(booster: lgb.Booster) -> int:
    """The rounds early stopping kept (every round when it never stopped)."""
    return int(booster.best_iteration) or int(booster.current_iteration())


def refit_lightgbm(params: dict[str, Any], x: np.ndarray, y: np.ndarray, rounds: int,
                   weight: np.ndarray | None = None, **dataset: Any) -> Refitted:  # fmt: skip
    """`refit_on_all` for LightGBM, `rounds` per booster; `dataset` passes feature names and
    categoricals to lgb.Dataset."""

    def fit_rows(rows: np.ndarray) -> lgb.Booster:
        w = None if weight is None else weight[rows]
        return lgb.train(params, lgb.Dataset(x[rows], y[rows], weight=w, **dataset), rounds)

    return refit_on_all(fit_rows, lambda b, rows: np.asarray(b.predict(x[rows])), y)


def refit(trainer: str, df: pd.DataFrame, booster: Any, params: dict[str, Any] | None,
          decline_weight: float) -> Refitted:  # fmt: skip
    """The split model's booster refitted on every row of `df` (module docstring)."""
    w = decline_weights(df, decline_weight)
    x, y = features(df), df.approved.to_numpy()
    if trainer != "xgboost":
        return refit_lightgbm({**DEFAULT_PARAMS, **(params or {})}, x, y, best_rounds(booster),
                              w, feature_name=list(FEATURE_NAMES))  # fmt: skip
    import xgboost as xgb

    rounds = int(booster.num_boosted_rounds())  # fit_xgboost sliced it to its best round
    p = {**XGB_PARAMS, **(params or {})}

    def fit_rows(rows: np.ndarray) -> Any:
        return xgb.train(p, xgb.DMatrix(x[rows], y[rows], weight=w[rows]), rounds)

    return refit_on_all(fit_rows, lambda b, rows: FRAMEWORKS[trainer].predict(b, x[rows]), y)


def run(matrix: Path, out: Path, name: str, version: str, decline_weight: float = 1.0,
        champion: Path | None = None, value_minor: float = 300.0,
        attempt_cost_minor: float = 12.0, trainer: str = "lightgbm",
        rounds: int = 1000, params: dict[str, Any] | None = None,
        refit_all: bool = False,
        ignore: tuple[str, ...] = IGNORED_FEATURES) -> dict[str, Any]:  # fmt: skip
    """Train, calibrate, evaluate (`params` over the trainer's defaults, e.g. a sweep's pick);
    writes model.txt (LightGBM) or model.json (XGBoost), calibration.json, metrics.json (with
    the trainer, which `authpilot compile` reads), report.md and PNGs. `refit_all`: the served
    booster is refitted on every row (module docstring). `ignore`: features the model is
    trained blind to (IGNORED_FEATURES says why)."""
    t0 = time.monotonic()
    fw = FRAMEWORKS[trainer]
    out.mkdir(parents=True, exist_ok=True)
    df = masked(pd.read_parquet(matrix), ignore)
    split = time_split(df)
    _say(f"rows: train {len(split.train)} valid {len(split.valid)} test {len(split.test)}")
    unseen = ev.out_of_range(split.train, split.valid, FEATURE_NAMES)
    if unseen:
        _say("validation rows outside the training range: " + _shares(unseen))
    booster = TRAINERS[trainer](split, rounds=rounds, params=params,
                                decline_weight=decline_weight)  # fmt: skip
    _say(f"{trainer}: {fw.num_trees(booster)} trees in {time.monotonic() - t0:.1f}s")
    raw_va = fw.predict(booster, features(split.valid))
    cal, cal_scores = choose(raw_va, split.valid.approved.to_numpy().astype(float))
    _say(f"calibration: {cal.kind} (validation half-split log loss {cal_scores})")
    y = split.test.approved.to_numpy().astype(float)
    raw = fw.predict(booster, features(split.test))
    p = cal.apply(raw.copy())
    prior = float(split.train.approved.mean())
    base = ev.success_rate_baseline(split.test, prior)
    rows = {"model (calibrated)": ev.metrics(y, p), "model (raw)": ev.metrics(y, raw),
            "success-rate baseline": ev.metrics(y, base)}  # fmt: skip
    curves = {"model": p, "success-rate": base}
    if champion is not None:
        ch_fw = of_train_dir(champion)
        ch_booster = ch_fw.load(champion / ch_fw.model_file)
        ch_cal = Calibration.from_dict(json.loads((champion / "calibration.json").read_text()))
        pc = ch_cal.apply(ch_fw.predict(ch_booster, features(split.test)))
        rows[f"champion {champion.parent.name}/{champion.name}"] = ev.metrics(y, pc)
        curves["champion"] = pc
    imp = pd.Series(fw.importance(booster), index=list(FEATURE_NAMES))
    pngs = ev.plots(out, y, curves, imp)
    trained_on = split.train
    served: dict[str, Any] = {"refit_all": False, "rows": len(split.train)}
    if refit_all:
        trained_on = pd.concat([split.train, split.valid, split.test])
        _say(f"refit on all {len(trained_on)} rows ({REFIT_FOLDS} folds for the calibration)")
        r = refit(trainer, trained_on, booster, params, decline_weight)
        booster, cal = r.booster, r.calibration
        p_served = cal.apply(fw.predict(booster, features(split.test)))
        served = {"refit_all": True, "rows": len(trained_on), "trees": fw.num_trees(booster),
                  "calibration": cal.kind, "out_of_fold": r.oof,
                  # in-sample for the served model: how far it moved from the split's, not a
                  # test of it
                  "test_mean_abs_diff": float(np.abs(p_served - p).mean()),
                  "test_mean_p": float(p_served.mean()),
                  "test_mean_p_split": float(p.mean())}  # fmt: skip
        _say(f"served: {served['trees']} trees, calibration {cal.kind}, out-of-fold log loss "
             f"{r.oof['log_loss']:.4f} ECE {r.oof['ece']:.4f}; mean |p - p_split| "
             f"{served['test_mean_abs_diff']:.4f} on the test window (seen)")  # fmt: skip
    fw.save(booster, out / fw.model_file)
    (out / "calibration.json").write_text(json.dumps(cal.to_dict()))
    seg = {c: ev.by_segment(split.test.assign(**_segments(split.test)), p, c)
           for c in ("network", "issuer_region", "route_id")}  # fmt: skip
    cost = ev.cost_analysis(y, p, value_minor, attempt_cost_minor)
    cost_base = ev.cost_analysis(y, base, value_minor, attempt_cost_minor)
    summary = {
        "name": name,
        "version": version,
        "feature_hash": feature_hash(),
        "trainer": trainer,
        "model_file": fw.model_file,
        "decline_weight": decline_weight,
        "ignored_features": list(ignore),
        "validation_out_of_range": unseen,
        "trees": fw.num_trees(booster),
        "calibration": cal.kind,
        "metrics_test": rows,
        "cost": {"model": cost, "success_rate": cost_base},
        "served_model": served,
        "training_window_ms": [  # the served booster's rows
            int(trained_on.event_time.min()),
            int(trained_on.event_time.max()),
        ],
        "test_window_ms": [int(split.test.event_time.min()), int(split.test.event_time.max())],
        "params": {
            **(params or {}),
            "rounds": rounds,
            "rows_train": len(split.train),
            "rows_valid": len(split.valid),
            "rows_test": len(split.test),
        },
        "segments": {
            c: {str(r[c]): {k: r[k] for k in t.columns if k != c} for r in t.to_dict("records")}
            for c, t in seg.items()
        },
        "seconds": time.monotonic() - t0,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=1, default=float))
    _report(out, summary, seg, pngs, imp)
    _say(f"report: {out / 'report.md'}")
    return summary


def _segments(df: pd.DataFrame) -> dict[str, Any]:
    code = df.network_code.map(lambda v: NETWORKS[int(v)] if v == v else "UNKNOWN")
    return {"network": code, "issuer_region": np.where(df.cross_border > 0, "cross-border",
                                                          "domestic")}  # fmt: skip


def _report(out: Path, s: dict[str, Any], seg: dict[str, pd.DataFrame], pngs: list[str],
            imp: pd.Series) -> None:  # fmt: skip
    lines = [
        f"# Model report: {s['name']}/{s['version']}",
        "",
        f"{s['trainer']}, {s['trees']} trees, decline weight {s['decline_weight']:g}, "
        f"calibration **{s['calibration']}**, feature hash "
        f"`{s['feature_hash']}`. Test window is the latest 15% of attempts by time.",
        "",
        f"Trained blind to: {_names(s['ignored_features'])} (missing on every row; "
        "`--ignore-features`).",
        "",
        *_unseen_lines(s["validation_out_of_range"]),
        *_served_lines(s["served_model"]),
        "## Test metrics",
        "",
        ev.markdown_table(s["metrics_test"]),
        "",
        "## Cost-sensitive view",
        "",
        "Attempt only where p x value > attempt cost; net value per offered attempt.",
        "",
        ev.markdown_table(s["cost"]),
        "",
    ]
    for col, table in seg.items():
        lines += [f"## By {col}", "", ev.frame_markdown(table), ""]
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in pngs]
    lines += ["", "## Top features (gain)", ""]
    lines += [f"- {k}: {v:,.0f}" for k, v in imp.sort_values(ascending=False).head(10).items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _shares(unseen: dict[str, float]) -> str:
    return ", ".join(f"`{c}` {v:.0%}" for c, v in unseen.items())


def _unseen_lines(unseen: dict[str, float]) -> list[str]:
    """The report's warning when the validation window reads values training never had."""
    if not unseen:
        return []
    return [f"Validation rows outside the training rows' range: {_shares(unseen)}. Early "
            "stopping and calibration judged these on values no tree was trained on "
            "(`validation_out_of_range` in metrics.json).", ""]  # fmt: skip


def _names(cols: list[str]) -> str:
    return ", ".join(f"`{c}`" for c in cols) or "none"


def _served_lines(served: dict[str, Any]) -> list[str]:
    if not served["refit_all"]:
        return []
    oof = served["out_of_fold"]
    return [f"**Served model: refitted on all {served['rows']:,} rows** with the split's rounds "
            f"(`--refit-all`), calibration {served['calibration']} chosen on {REFIT_FOLDS}-fold "
            f"out-of-fold scores (log loss {oof['log_loss']:.4f}, ECE {oof['ece']:.4f}, mean p "
            f"{oof['mean_p']:.4f} vs approval {oof['approval']:.4f}). The test metrics below "
            "are the split's model's; the served one has seen the test window, where its p "
            f"differs from the split's by {served['test_mean_abs_diff']:.4f} on average "
            f"(mean p {served['test_mean_p']:.4f} vs {served['test_mean_p_split']:.4f}).",
            ""]  # fmt: skip


def _say(msg: str) -> None:
    print(f"[train] {msg}", file=sys.stderr, flush=True)

"""Model evaluation: discrimination, calibration, cost, per segment, against baselines.

The success-rate baseline is what the worker serves without a model: the approval rate of the
most specific route-level feature that has history (BIN x route 7 days, then network x country x
route 24 hours, then the route over the last hour), else the training approval rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.experiments.stats import reliability
from app.models.calibration import EPS, log_loss


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties."""
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    ps = p[order]
    i = 0
    while i < len(ps):  # average ranks of tied scores
        j = i
        while j + 1 < len(ps) and ps[j + 1] == ps[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = y == 1
    n1, n0 = pos.sum(), (~pos).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def pr_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-p, kind="mergesort")
    ys = y[order]
    tp = np.cumsum(ys)
    precision = tp / np.arange(1, len(ys) + 1)
    recall = tp / max(ys.sum(), 1)
    return precision, recall


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    precision, recall = pr_curve(y, p)
    return float(np.sum(np.diff(np.concatenate(([0.0], recall))) * precision))


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {
        "n": float(len(y)),
        "approval_rate": float(np.mean(y)),
        "roc_auc": roc_auc(y, p),
        "pr_auc": average_precision(y, p),
        "log_loss": log_loss(y, p),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": reliability(y, p).ece,
    }


def success_rate_baseline(df: pd.DataFrame, prior: float) -> np.ndarray:
    """The fallback router's estimate, from the same point-in-time features."""
    est = np.full(len(df), prior)
    for col, ncol in (
        ("route_1h_ok_rate", "route_1h_n"),
        ("country_route_24h_ok_rate", "country_route_24h_n"),
        ("bin_route_7d_ok_rate", "bin_route_7d_n"),
    ):  # least specific first: later (more specific) levels overwrite when trusted
        ok = (df[ncol].to_numpy() >= 20) & df[col].notna().to_numpy()
        est[ok] = df[col].to_numpy()[ok]
    return np.clip(est, EPS, 1 - EPS)


def cost_analysis(y: np.ndarray, p: np.ndarray, value: float, cost: float) -> dict[str, float]:
    """Attempt only where p * value > cost: value gained per attempt offered, vs always."""
    attempt = p * value > cost
    gained = np.sum(y[attempt] * value) - attempt.sum() * cost
    always = np.sum(y * value) - len(y) * cost
    return {
        "threshold_p": cost / value,
        "attempt_share": float(attempt.mean()),
        "net_value_per_offer": float(gained / len(y)),
        "always_attempt_value_per_offer": float(always / len(y)),
    }


def by_segment(df: pd.DataFrame, p: np.ndarray, col: str) -> pd.DataFrame:
    rows = []
    for key, idx in df.groupby(col).indices.items():
        y = df.approved.to_numpy()[idx]
        if len(idx) < 50:
            continue
        m = metrics(y, p[idx])
        rows.append({col: key, **{k: m[k] for k in ("n", "approval_rate", "roc_auc",
                                                     "log_loss", "ece")}})  # fmt: skip
    return pd.DataFrame(rows)


def plots(out: Path, y: np.ndarray, curves: dict[str, np.ndarray],
          importance: pd.Series) -> list[str]:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for label, p in curves.items():
        r = reliability(y, p)
        filled = r.count > 0
        ax.plot(r.p_mean[filled], r.y_mean[filled], "o-", ms=3, label=f"{label} (ECE {r.ece:.3f})")
    ax.set(xlabel="predicted approval probability", ylabel="observed approval rate",
           title="Reliability (test window)")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    names.append("reliability.png")
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for label, p in curves.items():
        # the minority class of card authorizations is the decline: plot PR for declines
        prec, rec = pr_curve(1 - y, 1 - p)
        ax.plot(rec, prec, label=f"{label} (AP {average_precision(1 - y, 1 - p):.3f})")
    ax.set(xlabel="recall (declines)", ylabel="precision (declines)", title="PR curve, declines")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pr_curve.png", dpi=110)
    names.append("pr_curve.png")
    fig, ax = plt.subplots(figsize=(6, 7))
    top = importance.sort_values().tail(20)
    ax.barh(top.index, top.values)
    ax.set(title="Feature importance (gain)")
    fig.tight_layout()
    fig.savefig(out / "feature_importance.png", dpi=110)
    names.append("feature_importance.png")
    plt.close("all")
    return names


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    cols = list(next(iter(rows.values())))
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def frame_markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    for r in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in r) + " |")
    return "\n".join(lines)


def out_of_range(train: pd.DataFrame, other: pd.DataFrame, names: Sequence[str],
                 min_share: float = 0.1) -> dict[str, float]:  # fmt: skip
    """Per feature, the share of `other`'s rows (missing values left out) outside the training
    rows' [min, max], where it is at least `min_share`, largest first. A tree cannot split
    beyond what it was trained on, so a validation window with many such rows judges early
    stopping and calibration on values the trees never saw. A warning, not a verdict: on the
    issuer_shift history 101 (13.5 days) every validation row's pay-cycle features lie outside
    training's (half of them within a day after a payday, training's minimum 4.0 days) and
    early stopping took 57 trees; on acquirer_outage's history the same share grew 279."""
    out = {}
    for c in names:
        tr = train[c].to_numpy(float)
        tr = tr[np.isfinite(tr)]
        v = other[c].to_numpy(float)
        v = v[np.isfinite(v)]
        if not len(tr) or not len(v):
            continue
        share = float(((v < tr.min()) | (v > tr.max())).mean())
        if share >= min_share:
            out[c] = share
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))

"""Report output: markdown, plots, and the report directory (report.md, summary.json, PNGs).

Pure formatting of ExperimentReport / ShadowReport; matplotlib is imported only when plotting
(Agg backend: reports are written on servers without a display).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.experiments.experiment import ExperimentReport
from app.experiments.shadow import ShadowReport
from app.experiments.stats import Interval


def _pct(i: Interval) -> str:
    return f"{i.mean:.2%} [{i.lo:.2%}, {i.hi:.2%}]"


def _num(i: Interval, digits: int = 3) -> str:
    return f"{i.mean:.{digits}f} [{i.lo:.{digits}f}, {i.hi:.{digits}f}]"


def experiment_markdown(r: ExperimentReport) -> str:
    lines = [
        "# Experiment report",
        "",
        f"Source: {r.source}. Arms by hash(payment_id) mod 100: every attempt of a payment is in "
        "one arm, so the tests compare payments. Intervals are 95% (Wilson for rates, normal for "
        "means); per-attempt rates treat a payment's attempts as independent (context only).",
        "",
        f"Left out: {r.pending:,} decisions without an outcome, {r.orphans:,} outcomes without a "
        f"decision; duplicates/undecodable dropped {r.dropped}; payments with mixed arms: "
        f"{r.mixed_arm_payments}.",
        "",
        "| arm | payments | attempts | approval per payment | approval per attempt | "
        "approved value (minor) | attempts per payment | fees per payment (minor) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a, s in r.arms.items():
        name = f"{a} (control)" if a == r.control and a != "control" else a
        lines.append(
            f"| {name} | {s.payments:,} | {s.attempts:,} | {_pct(s.approval_per_payment)} | "
            f"{_pct(s.approval_per_attempt)} | {s.approved_value_minor:,.0f} | "
            f"{_num(s.attempts_per_payment)} | {_num(s.fees_per_payment, 1)} |"
        )
    if r.comparisons:
        lines += [
            "",
            "## Arms against the control (approval per payment)",
            "",
            "| arm | difference | 95% CI | z | p (z-test, one look) | always-valid p (mSPRT) |",
            "|---|---|---|---|---|---|",
        ]
        for c in r.comparisons:
            lines.append(
                f"| {c.arm} vs {c.control} | {c.z.diff:+.2%} | [{c.z.ci95[0]:+.2%}, "
                f"{c.z.ci95[1]:+.2%}] | {c.z.z:.2f} | {c.z.p_value:.4f} | {c.always_valid_p:.4f} |"
            )
        lines += [
            "",
            "The always-valid p-value may be read at any time (it is the running minimum "
            "over looks); the z-test p-value is valid only for one look fixed in advance.",
            "",
            "## Guardrails (higher is worse; margin relative to the control)",
            "",
            "| arm | metric | increase | 95% CI | margin | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for c in r.comparisons:
            for g in c.guardrails:
                lines.append(
                    f"| {c.arm} | {g.metric} | {g.diff.mean:+.4f} | [{g.diff.lo:+.4f}, "
                    f"{g.diff.hi:+.4f}] | {g.margin:.4f} | {g.verdict} |"
                )
    lines += ["", "![approval per arm](approval.png)"]
    if r.sequential:
        lines += ["", "![sequential p-value](sequential.png)"]
    return "\n".join(lines) + "\n"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_experiment(r: ExperimentReport, out: Path) -> list[Path]:
    plt = _plt()
    names = list(r.arms)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(names)))
    for off, key, label in (
        (-0.15, "approval_per_payment", "per payment"),
        (0.15, "approval_per_attempt", "per attempt"),
    ):
        iv = [getattr(r.arms[n], key) for n in names]
        m = np.array([i.mean for i in iv]) * 100
        err = np.array([[i.mean - i.lo for i in iv], [i.hi - i.mean for i in iv]]) * 100
        ax.errorbar(m, y + off, xerr=err, fmt="o", capsize=4, label=label)
    ax.set_yticks(y, names)
    ax.set_xlabel("approval rate % (95% CI)")
    ax.set_title("approval per arm")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [out / "approval.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    if r.sequential:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for s in r.sequential:
            line = ax.plot(
                s.payments,
                np.maximum(s.always_valid, 1e-12),
                label=f"{s.arm}: always-valid (mSPRT)",
            )[0]
            ax.plot(
                s.payments,
                np.maximum(s.naive, 1e-12),
                ls=":",
                color=line.get_color(),
                label=f"{s.arm}: repeated z-test (not valid under peeking)",
            )
        ax.axhline(0.05, color="grey", lw=1, ls="--", label="alpha 0.05")
        ax.set_yscale("log")
        ax.set_xlabel("payments seen (arm + control)")
        ax.set_ylabel("p-value")
        ax.set_title("sequential p-value vs control")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(out / "sequential.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s)


def shadow_markdown(r: ShadowReport) -> str:
    lines = [
        "# Shadow report",
        "",
        f"Source: {r.source}; {r.champion_attempts:,} champion attempts with an outcome; "
        f"duplicates/undecodable dropped {r.dropped}.",
        "",
        "Off-policy estimates: approval per attempt the challenger's greedy route would have "
        "had on the logged attempts, from the champion's logged propensities (IPS, "
        "self-normalized IPS, doubly robust with the challenger's p_approve as reward model); "
        "analytic 95% intervals.",
        "",
    ]
    for c in r.challengers:
        e = c.estimate
        lines += [
            f"## {c.model_version}",
            "",
            "| figure | value |",
            "|---|---|",
            f"| attempts (shadowed, with outcome) | {c.attempts:,} |",
            f"| agreement with the champion's final route | {_pct(c.agreement)} |",
            f"| ECE of p_approve where it agreed ({int(c.calibration.count.sum()):,} attempts) "
            f"| {c.calibration.ece:.4f} |",
            f"| champion's logged approval per attempt | {_pct(c.logged_approval)} |",
            f"| challenger's best route = logged route | {c.greedy_agreement:.2%} |",
            f"| IPS | {_pct(e.ci95('ips'))} |",
            f"| SNIPS | {_pct(e.ci95('snips'))} |",
            f"| DR | {_pct(e.ci95('dr'))} |",
            f"| effective sample size | {e.effective_n:,.0f} |",
            f"| left out (propensity missing or not in (0, 1]) | {c.bad_propensity:,} |",
            "",
            f"![calibration](calibration_{_slug(c.model_version)}.png)",
            f"![off-policy](off_policy_{_slug(c.model_version)}.png)",
            "",
        ]
    return "\n".join(lines)


def plot_shadow(r: ShadowReport, out: Path) -> list[Path]:
    plt = _plt()
    paths = []
    for c in r.challengers:
        rel, slug = c.calibration, _slug(c.model_version)
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
        filled = rel.count > 0
        ax.plot(rel.p_mean[filled], rel.y_mean[filled], "o-", label=f"ECE {rel.ece:.4f}")
        lo = np.nanmin(rel.p_mean[filled]) if filled.any() else 0.0
        ax.set_xlim(max(0.0, lo - 0.05), 1)
        ax.set_ylim(max(0.0, lo - 0.05), 1)
        ax.set_xlabel("predicted p_approve (bin mean)")
        ax.set_ylabel("observed approval")
        ax.set_title(f"{c.model_version}: calibration where it agreed")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out / f"calibration_{slug}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        iv = [("champion (logged)", c.logged_approval)] + [
            (k.upper(), c.estimate.ci95(k)) for k in ("ips", "snips", "dr")
        ]
        for yy, (_, i) in enumerate(iv):
            ax.errorbar(
                [i.mean * 100],
                [yy],
                xerr=[[(i.mean - i.lo) * 100], [(i.hi - i.mean) * 100]],
                fmt="o",
                capsize=4,
            )
        ax.set_yticks(range(len(iv)), [k for k, _ in iv])
        ax.set_xlabel("approval per attempt % (95% CI)")
        ax.set_title(f"{c.model_version}: off-policy estimates")
        fig.tight_layout()
        paths.append(out / f"off_policy_{slug}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _jsonable(x: Any) -> Any:
    if is_dataclass(x) and not isinstance(x, type):
        return {k: _jsonable(v) for k, v in asdict(x).items()}
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_report(r: ExperimentReport | ShadowReport, out: Path) -> Path:
    """report.md, summary.json and the plots in `out`; returns the markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(r, ExperimentReport):
        plot_experiment(r, out)
        md = experiment_markdown(r)
    else:
        plot_shadow(r, out)
        md = shadow_markdown(r)
    (out / "summary.json").write_text(json.dumps(_jsonable(r), indent=1))
    path = out / "report.md"
    path.write_text(md)
    return path

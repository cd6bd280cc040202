"""The sweep's report: the frontier table, the Pareto front and the cost view as PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.models.frontier.frontier import Figures


def _plots(out: Path, figs: list[Figures], front: list[Figures], rec: Figures | None,
           budget_us: float) -> list[str]:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"lightgbm": "tab:green", "xgboost": "tab:blue", "logistic": "tab:orange",
              "mlp": "tab:purple"}  # fmt: skip
    names = []
    for fname, ykey, ylabel in (
        ("frontier.png", "value_per_1000", "net value per 1,000 requests (minor units)"),
        ("logloss_latency.png", "log_loss", "test log loss (lower is better)"),
    ):
        fig, ax = plt.subplots(figsize=(7.5, 5))
        for f in figs:
            ax.scatter(f.p99_us, getattr(f, ykey), color=colors[f.family], s=60,
                       marker="o" if f.servable else "s", zorder=3)  # fmt: skip
            ax.annotate(f.name, (f.p99_us, getattr(f, ykey)), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")  # fmt: skip
        if ykey == "value_per_1000":
            ax.plot([f.p99_us for f in front], [f.value_per_1000 for f in front], "k--", lw=1,
                    label="Pareto front", zorder=2)  # fmt: skip
            if rec is not None:
                ax.scatter(
                    rec.p99_us,
                    rec.value_per_1000,
                    s=220,
                    facecolors="none",
                    edgecolors="red",
                    label=f"recommended ({rec.name})",
                    zorder=4,
                )
            ax.legend(fontsize=8)
        ax.axvline(budget_us, color="red", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("p99 of one 4-route request through score_many (us, log scale)")
        ax.set_ylabel(ylabel)
        ax.set_title("circles: compiled trees (servable); squares: numpy models")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
        names.append(fname)
    return names


def write_report(out: Path, cfg: Any, figs: list[Figures], front: list[Figures],
                 rec: Figures | None, ref_us: float,
                 baselines: dict[str, dict[str, float]]) -> Path:  # fmt: skip
    pngs = _plots(out, figs, front, rec, cfg.budget_us)
    on_front = {f.name for f in front}
    lines = [
        f"# Model complexity against latency: {cfg.scenario}",
        "",
        f"History {cfg.history_attempts:,} attempts over {cfg.history_days:g} days (seed "
        f"{cfg.history_seed}); test window: the latest 15% of its attempts; closed loop: "
        f"{cfg.payments:,} payments of days {cfg.history_days:g}-"
        f"{cfg.history_days + cfg.eval_days:g} (seed {cfg.seed}) through the expected-value "
        "router, the same payments and draws for every candidate. Shares are of the oracle's "
        "uplift over the best single route per merchant (first-attempt approval, net value). "
        f"Latency: one request of 4 candidate routes and batches of 32, {cfg.reps:,} timed "
        f"calls each; the raw generated predict() of the default model takes "
        f"{ref_us:.2f} us for the 4 rows (x raw = p50 / that, same run). Value per 1k "
        "requests: margin on approvals minus fees (route and decline fees), +- the 95% "
        "half-width of its paired difference to the best single route: the closed loop's "
        "noise, which differences between candidates must exceed to mean anything.",
        "",
        "| candidate | family | log loss | ECE | ROC AUC | PR AUC | approval share | value "
        "share | value / 1k req | p50 us | p99 us | x raw | batch us/req | size KB | train s "
        "| compile s | front |",
        "|" + "---|" * 17,
    ]
    for f in figs:
        lines.append(
            f"| {f.name} | {f.family} | {f.log_loss:.4f} | {f.ece:.4f} | {f.roc_auc:.3f} | "
            f"{f.pr_auc:.3f} | {f.approval_share:.0%} | {f.value_share:.0%} | "
            f"{f.value_per_1000:,.0f} +-{f.value_vs_static_ci:,.0f} | {f.p50_us:.1f} | "
            f"{f.p99_us:.1f} | {f.ratio_p50:.1f} | "
            f"{f.batch_us:.2f} | {f.size_bytes / 1024:,.0f} | {f.train_s:.1f} | "
            f"{f.compile_s:.1f} | {'yes' if f.name in on_front else ''} |"
        )
    lines += ["", "Baselines (per payment): " + "; ".join(
        f"{k}: first-attempt approval {v['first_approval']:.4f}, net value {v['net_value']:.1f}"
        for k, v in baselines.items()), ""]  # fmt: skip
    if rec is None:
        lines.append(f"**No servable candidate fits the {cfg.budget_us:g} us p99 budget.**")
    else:
        lines.append(f"**Recommended under a {cfg.budget_us:g} us p99 budget: {rec.name}** "
                     f"({rec.family}, value {rec.value_per_1000:,.0f} per 1k requests, p99 "
                     f"{rec.p99_us:.1f} us). Only compiled tree models are servable by the "
                     "worker today; the numpy models are measured for comparison.")  # fmt: skip
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in pngs]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path

"""The demo's report: markdown and PNGs under var/demo/ (approval per arm over simulated time
with the incidents marked, route shares of each arm through them, latency over time)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from app.demo.stats import HOUR_MS, DemoStats
from app.demo.view import _ci, phase_rows


def _plots(out: Path, st: DemoStats, events: list[tuple[str, int, int | None]],
           routes: list[str]) -> list[str]:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = sorted(st.hours)
    arms = sorted({a for h in st.hours.values() for a in h})
    names = []

    def mark(ax: Any) -> None:
        for label, t0, t1 in events:
            h0 = t0 / HOUR_MS
            if t1 is None:
                ax.axvline(h0, color="red", ls="--", lw=1)
            else:
                ax.axvspan(h0, t1 / HOUR_MS, color="red", alpha=0.12)
            ax.annotate(label, (h0, 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                        xytext=(2, -12), textcoords="offset points", color="red")  # fmt: skip

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for a in arms:
        xs = [h for h in hours if st.hours[h].get(a) and st.hours[h][a].payments >= 5]
        ys = [100 * st.hours[h][a].approved / st.hours[h][a].payments for h in xs]
        ax.plot(xs, ys, marker="o", ms=3, label=a)
    mark(ax)
    ax.set_xlabel("simulated hour (since the epoch)")
    ax.set_ylabel("first-attempt approval %")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "approval_by_arm.png", dpi=110)
    plt.close(fig)
    names.append("approval_by_arm.png")

    fig, axes = plt.subplots(len(arms), 1, figsize=(9, 2.4 * len(arms)), sharex=True,
                             squeeze=False)  # fmt: skip
    for ax, a in zip(axes[:, 0], arms, strict=True):
        xs = [h for h in hours if st.hours[h].get(a) and st.hours[h][a].payments > 0]
        bottom: list[float] = [0.0] * len(xs)
        for r in routes:
            ys = [100 * st.hours[h][a].routes[r] / st.hours[h][a].payments for h in xs]
            ax.bar(xs, ys, bottom=bottom, width=0.9, label=r)
            bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
        mark(ax)
        ax.set_ylabel(f"{a}: route %")
    axes[0, 0].legend(fontsize=7, ncol=len(routes))
    axes[-1, 0].set_xlabel("simulated hour")
    fig.tight_layout()
    fig.savefig(out / "route_shares.png", dpi=110)
    plt.close(fig)
    names.append("route_shares.png")

    fig, ax = plt.subplots(figsize=(9, 3.5))
    lx = [t / HOUR_MS for t, _ in st.latency_series]
    ax.plot(lx, [u / 1000 for _, u in st.latency_series], ".", ms=2, alpha=0.5)
    mark(ax)
    ax.set_yscale("log")
    ax.set_xlabel("simulated hour")
    ax.set_ylabel("produce -> decision ms")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    names.append("latency.png")
    return names


def write_report(out: Path, st: DemoStats, title: str, events: list[tuple[str, int, int | None]],
                 routes: list[str], facts: dict[str, Any],
                 watch: tuple[str, str] | None = None) -> Path:  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    pngs = _plots(out, st, events, routes)
    arms = st.snapshot()
    lines = [f"# {title}", ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()]
    lines += ["", "## Arms (first attempts, 95% intervals)", "",
              "| arm | payments | approval % | value / payment | uplift vs holdout pp | "
              + " | ".join(f"{r} %" for r in routes) + " |",
              "|" + "---|" * (5 + len(routes))]  # fmt: skip
    for name, a in sorted(arms.items()):
        up = "(holdout)" if name == st.holdout else _ci(st.uplift(name), digits=2)
        shares = [f"{100 * a.routes[r] / a.payments:.0f}" if a.payments else "-" for r in routes]
        lines.append(
            f"| {name} | {a.payments:,} | {_ci(a.approval(), 100)} | "
            f"{_ci(a.value_per_payment())} | {up} | " + " | ".join(shares) + " |"
        )
    cols, rows = phase_rows(st)
    lines += ["", "## By phase of the story", "",
              "The same arms within each phase: an incident's effect is diluted in the totals "
              "above. Uplift is against the holdout in the same phase."
              + (f" The last column is the share of {watch[0]} cards' first attempts sent to "
                 f"{watch[1]}, the route their issuers favour after the shift."
                 if watch else ""), "",
              "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]  # fmt: skip
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    _, p50, p99 = st.window()
    agree = st.shadow_agree / st.shadow_seen if st.shadow_seen else math.nan
    lines += ["", f"Shadow challenger agreement with the champion's route: {agree:.1%} of "
              f"{st.shadow_seen:,} requests. Last 10 s: p50 {p50 / 1000:.1f} ms, p99 "
              f"{p99 / 1000:.1f} ms produce -> decision.", "", "## Alerts", ""]  # fmt: skip
    if not st.alerts:
        lines.append("none")
    lines += [f"- {a.get('_sim', '')} **{a['kind']}** {a['subject']}: {a['message']}"
              for a in st.alerts]  # fmt: skip
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in pngs]
    if (out / "view.txt").exists():
        lines += ["", "The live view as it ended: `view.txt`."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path

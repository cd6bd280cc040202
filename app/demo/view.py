"""The demo's live view (rich): redrawn in place once a second from DemoStats."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from app.demo.stats import DemoStats


def _ci(iv: Any, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
    if not math.isfinite(iv.mean):
        return "-"
    return (f"{iv.mean * scale:.{digits}f}{unit} [{iv.lo * scale:.{digits}f}, "
            f"{iv.hi * scale:.{digits}f}]")  # fmt: skip


def phase_rows(st: DemoStats) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) of the per-phase comparison, for the live view and the report: per
    phase and arm, first-attempt approval, its uplift over the holdout in that phase, value
    per payment, and the watched segment's share on the route its shift favours."""
    cols = ["phase", "arm", "payments", "approval %", "uplift vs holdout pp", "value / payment"]
    if st.watch is not None:
        cols.append(f"{st.watch[0]} cards on {st.watch[1]} %")
    rows = []
    for phase, arms in st.phase_snapshot():
        for name, a in sorted(arms.items()):
            up = "(holdout)" if name == st.holdout else _ci(st.uplift(name, phase), digits=2)
            row = [phase, name, f"{a.payments:,}", _ci(a.approval(), 100), up,
                   _ci(a.value_per_payment(), digits=0)]  # fmt: skip
            if st.watch is not None:
                row.append(_ci(a.watched_share(), 100, digits=0) + f" of {a.watched:,}"
                           if a.watched else "-")  # fmt: skip
            rows.append(row)
    return cols, rows


def render(st: DemoStats, header: str, sim_time: str, phase: str, routes: list[str]) -> Group:
    arms = st.snapshot()
    t = Table(title="per arm: first attempts (95% intervals)", expand=True)
    for col in ("arm", "payments", "approval %", "value / payment", "uplift vs holdout pp",
                *(f"{r} %" for r in routes)):  # fmt: skip
        t.add_column(col, justify="right" if col != "arm" else "left")
    for name, a in sorted(arms.items()):
        up = "(holdout)" if name == st.holdout else _ci(st.uplift(name), digits=2)
        shares = [f"{100 * a.routes[r] / a.payments:.0f}" if a.payments else "-" for r in routes]
        t.add_row(name, f"{a.payments:,}", _ci(a.approval(), 100), _ci(a.value_per_payment()),
                  up, *shares)  # fmt: skip
    rate, p50, p99 = st.window()
    shadow = (f"{st.shadow_agree / st.shadow_seen:.1%} of {st.shadow_seen:,}"
              if st.shadow_seen else "no shadow decisions yet")  # fmt: skip
    scored = st.model_scored / st.decisions if st.decisions else math.nan
    line = Text.assemble(
        (f"{sim_time}  ", "bold"), (f"{phase}  ", "bold magenta"),
        f"throughput {rate:,.0f}/s  produce->decision last 10 s: p50 {p50 / 1000:.1f} ms "
        f"p99 {p99 / 1000:.1f} ms  model-scored {scored:.0%}  challenger agreement {shadow}",
    )  # fmt: skip
    alerts = Table(show_header=True, expand=True, title="alerts (latest 6)")
    for col in ("simulated time", "kind", "subject", "message"):
        alerts.add_column(col)
    for al in st.alerts[-6:]:
        alerts.add_row(str(al.get("_sim", "")), al["kind"], al["subject"], al["message"][:80])
    cols, rows = phase_rows(st)
    by_phase = Table(title="by phase of the story (first attempts, 95% intervals)", expand=True)
    for col in cols:
        by_phase.add_column(col, justify="left" if col in ("phase", "arm") else "right")
    for row in rows:
        by_phase.add_row(*row)
    return Group(Panel(header, style="cyan"), line, t, by_phase, alerts)

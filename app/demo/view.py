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
    return Group(Panel(header, style="cyan"), line, t, alerts)

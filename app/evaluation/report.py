"""Policy comparison: per-policy metrics with confidence intervals, paired uplifts, targets.

Intervals are normal approximations over payments pooled across seeds: rates as proportions,
values as means per payment. Because every policy sees the same payments and the same draws
(common random numbers, see loop.py), differences between two policies are computed per
payment and their interval is the paired one, much tighter than comparing two intervals.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.evaluation.loop import PolicyRun
from app.experiments.stats import Interval, mean_ci, ratio_ci
from app.retry.engine import decline_class

if TYPE_CHECKING:
    from app.evaluation.adaptation import Adaptation


# issue 17's attempt budget: a retrier's MIT retry attempts as a share of the fixed schedule's
ATTEMPT_BUDGET = 0.75


def fmt(e: Interval, scale: float = 1.0, digits: int = 2) -> str:
    return f"{e.mean * scale:.{digits}f} [{e.lo * scale:.{digits}f}, {e.hi * scale:.{digits}f}]"


def pooled(runs: list[PolicyRun]) -> dict[str, np.ndarray]:
    """One policy's per-payment arrays, concatenated over seeds (seed order)."""
    runs = sorted(runs, key=lambda r: r.seed)
    keys = ("amount", "first_approved", "approved", "attempts", "fees", "violations",
            "mit")  # fmt: skip
    return {k: np.concatenate([getattr(r, k) for r in runs]) for k in keys}


def per_payment(p: dict[str, np.ndarray], margin_bps: float) -> dict[str, np.ndarray]:
    """Per-payment metric columns (their means are the report's figures)."""
    recovered = p["approved"] & ~p["first_approved"]
    return {
        "first_approval": p["first_approved"].astype(float),
        "approval": p["approved"].astype(float),
        "approved_value": p["amount"] * p["approved"],
        "recovered_value": p["amount"] * recovered,
        "cost": p["fees"],
        "net_value": p["amount"] * p["approved"] * margin_bps / 1e4 - p["fees"],
        "attempts": p["attempts"].astype(float),
        "retries": (p["attempts"] - 1).astype(float),
        # the population a dunning schedule acts on: merchant-initiated payments
        "mit_recovered_value": p["amount"] * recovered * p["mit"],
        "mit_retries": (p["attempts"] - 1).astype(float) * p["mit"],
        "violations": p["violations"].astype(float),
    }


@dataclass
class Comparison:
    policies: dict[str, dict[str, Interval]]  # policy -> metric -> estimate per payment
    totals: dict[str, dict[str, float]]  # policy -> metric -> sum over all payments
    payments: int
    seeds: list[int]
    checks: list[dict[str, Any]]
    classes: list[dict[str, Any]] = field(default_factory=list)  # MIT retries by decline class
    class_others: list[str] = field(default_factory=list)  # more retriers in that table
    ceiling_mit: float | None = None  # MIT value the hindsight ceiling recovers, all seeds
    fixed: str = ""  # the fixed-schedule pair the retriers are read against
    # the most any causal retrier recovers in expectation within the target's attempt budget
    bound_mit: float | None = None


def compare(runs: list[PolicyRun], margin_bps: float, champion: str, single: str,
            success_rate: str, oracle: str, fixed: str,
            ceiling: np.ndarray | None = None,
            bound: np.ndarray | None = None) -> Comparison:  # fmt: skip
    """Metrics per policy and the issue's targets, from runs of several policies and seeds.

    `ceiling`: per payment (pooled in seed order), the declined MIT value a clairvoyant retrier
    recovers (app.evaluation.ceiling), reported as context for the retry targets; `bound`: per
    payment (pooled the same way), its part of the MIT value no causal retrier exceeds in
    expectation within ATTEMPT_BUDGET of the fixed schedule's attempts
    (app.evaluation.ceiling.budget_allocation): how much of the ceiling's gain is within reach
    at all, and in which decline class."""
    bound_total = None if bound is None else float(bound.sum())
    names = sorted({r.policy for r in runs}, key=[r.policy for r in runs].index)
    cols = {n: per_payment(pooled([r for r in runs if r.policy == n]), margin_bps) for n in names}
    pol = {n: {k: mean_ci(v) for k, v in c.items()} for n, c in cols.items()}
    totals = {n: {k: float(v.sum()) for k, v in c.items()} for n, c in cols.items()}
    checks: list[dict[str, Any]] = []

    def diff(a: str, b: str, metric: str) -> Interval:
        return mean_ci(cols[a][metric] - cols[b][metric])

    def check(name: str, value: str, ok: bool, target: str) -> None:
        checks.append({"check": name, "value": value, "target": target, "pass": bool(ok)})

    def context(name: str, value: str) -> None:  # a figure to read a target by, not a target
        checks.append({"check": name, "value": value, "target": "context", "pass": None})

    fa = "first_approval"
    if {champion, single, oracle} <= set(cols):
        up = diff(champion, single, fa)
        check(f"routing uplift {champion} vs {single} (first attempt, pp)",
              fmt(up, 100), up.mean >= 0.02, ">= 2.00")  # fmt: skip
        orc = diff(oracle, single, fa)
        share = up.mean / orc.mean if orc.mean > 0 else math.nan
        check(f"share of the oracle's uplift captured ({oracle} uplift {fmt(orc, 100)} pp)",
              f"{share:.0%}", share >= 0.8, ">= 80%")  # fmt: skip
    if {champion, success_rate} <= set(cols):
        d = diff(champion, success_rate, fa)
        check(f"{champion} vs {success_rate} (first attempt, pp)", fmt(d, 100), d.lo > 0,
              "> 0 (interval above zero)")  # fmt: skip
        nv = diff(champion, success_rate, "net_value")
        check(f"{champion} vs {success_rate} (net value per payment, minor units)", fmt(nv),
              nv.lo > 0, "> 0 (interval above zero)")  # fmt: skip
    if {champion, fixed} <= set(cols):
        a, b = totals[champion], totals[fixed]
        # the target population: merchant-initiated payments, the only ones a dunning schedule
        # retries, so both policies compete for the same declines
        mv, mr = b["mit_recovered_value"], b["mit_retries"]
        gain = diff(champion, fixed, "mit_recovered_value")
        base = float(cols[fixed]["mit_recovered_value"].mean())
        value = gain.mean / base if base else math.nan
        band = f"[{gain.lo / base:+.0%}, {gain.hi / base:+.0%}]" if base else ""
        tries = 1 - a["mit_retries"] / mr if mr else math.nan
        check(f"scheduled retries (MIT): recovered declined value, {champion} vs {fixed}",
              f"{value:+.0%} {band}", value >= 0.2, ">= +20%")  # fmt: skip
        check(f"scheduled retries (MIT): retry attempts saved, {champion} vs {fixed}",
              f"{tries:+.0%} ({a['mit_retries']:.0f} vs {mr:.0f})", tries >= 0.3,
              ">= 30% fewer")  # fmt: skip
        if ceiling is not None and mv:
            cv = float(ceiling.sum())
            share = (a["mit_recovered_value"] - mv) / (cv - mv) if cv > mv else math.nan
            context(f"hindsight ceiling (MIT): one clairvoyant retry per declined payment "
                    f"recovers {cv / mv - 1:+.0%} over {fixed}; {champion} closes "
                    f"{share:.0%} of that gap", f"{cv / mv - 1:+.0%}")  # fmt: skip
        if ceiling is not None and bound_total is not None and mv and cv > mv:
            context(f"causal bound (MIT): no retrier with at most the engine's retries per "
                    f"payment and {ATTEMPT_BUDGET:.0%} of {fixed}'s attempts recovers more in "
                    f"expectation, knowing every true p: {bound_total / mv - 1:+.0%} over "
                    f"{fixed}, {(bound_total - mv) / (cv - mv):.0%} of the hindsight ceiling's "
                    "gain", f"{(bound_total - mv) / (cv - mv):.0%}")  # fmt: skip
        if ceiling is not None and mv:
            _retriers_vs_ceiling(check, cols, fixed, ceiling)
        ov = a["recovered_value"] / b["recovered_value"] - 1 if b["recovered_value"] else math.nan
        ot = 1 - a["retries"] / b["retries"] if b["retries"] else math.nan
        context(f"all retries incl. in-session 3DS step-ups and cascades, which the schedule "
                f"never makes: recovered value {ov:+.0%}, attempts saved {ot:+.0%}",
                f"{ov:+.0%} / {ot:+.0%}")  # fmt: skip
    for name in names:  # where the retrier chose, was it right about p? (engines: p_recover)
        sent = [r for r in runs if r.policy == name]
        p_at = np.concatenate([r.retry_p for r in sent])
        if len(p_at):
            ok = np.concatenate([r.retry_ok for r in sent]).astype(float)
            real = mean_ci(ok)
            shown = (f"{p_at.mean():.3f} vs {real.mean:.3f} [{real.lo:.3f}, {real.hi:.3f}] "
                     f"(n={len(p_at)})")  # fmt: skip
            context(f"retry calibration (MIT scheduled retries) {name}: mean p_recover at "
                    f"the chosen times vs realized approval", shown)  # fmt: skip
    if champion in totals:
        v = totals[champion]["violations"]
        check(f"network-rule violations of {champion}", f"{v:.0f}", v == 0, "0")
    n = len(next(iter(cols.values()))["approval"]) if cols else 0
    classes = (by_decline_class(runs, fixed, champion, ceiling, bound)
               if {champion, fixed} <= set(cols) else [])  # fmt: skip
    others = _with_fixed_router(names, fixed, champion)
    return Comparison(pol, totals, n, sorted({r.seed for r in runs}), checks, classes,
                      others if classes else [],
                      None if ceiling is None else float(ceiling.sum()), fixed,
                      bound_total)  # fmt: skip


def _with_fixed_router(names: list[str], fixed: str, champion: str) -> list[str]:
    """The other retriers run with the fixed schedule's router (the retry comparison)."""
    router = fixed.partition("+")[0]
    return [n for n in names if n not in (fixed, champion) and n.partition("+")[0] == router]


def _decline_class(out: dict[str, Any]) -> str:
    if out.get("failure_side") == "ROUTE":
        return "route failure (cascade)"
    return decline_class(str(out["response_code"]))


def _retriers_vs_ceiling(check: Any, cols: dict[str, dict[str, np.ndarray]], fixed: str,
                         ceiling: np.ndarray) -> None:  # fmt: skip
    """Issue 17's targets for every retrier run with the fixed schedule's router: the share of
    the hindsight ceiling's MIT gain over the schedule (with its paired interval: a few
    thousand retries make it move by several points between runs), at <= ATTEMPT_BUDGET of
    its MIT retry attempts."""
    f = cols[fixed]["mit_recovered_value"]
    mr = float(cols[fixed]["mit_retries"].sum())
    if ceiling.sum() <= f.sum():
        return
    for name in _with_fixed_router(list(cols), fixed, ""):
        share = ratio_ci(cols[name]["mit_recovered_value"] - f, ceiling - f)
        tries = float(cols[name]["mit_retries"].sum())
        check(f"retries (MIT) {name}: share of the hindsight ceiling's gain over {fixed}",
              f"{share.mean:.0%} [{share.lo:.0%}, {share.hi:.0%}]", share.mean >= 0.7,
              ">= 70%")  # fmt: skip
        check(f"retries (MIT) {name}: attempts vs {fixed}",
              f"{tries / mr:.0%} ({tries:.0f} vs {mr:.0f})" if mr else "n/a",
              bool(mr) and tries / mr <= ATTEMPT_BUDGET, f"<= {ATTEMPT_BUDGET:.0%}")  # fmt: skip


def by_decline_class(runs: list[PolicyRun], fixed: str, champion: str,
                     ceiling: np.ndarray | None,
                     bound: np.ndarray | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Merchant-initiated payments by the class of their declined first attempt: declines,
    retries and recovered value of the fixed schedule and the champion, and what the causal
    bound and the hindsight ceiling recover (both computed on the champion's declines): where
    the difference comes from, and how much of it a causal retrier could reach."""
    rows: dict[str, dict[str, float]] = {}
    others = _with_fixed_router(list(dict.fromkeys(r.policy for r in runs)), fixed, champion)
    for name, tag in ((fixed, "fixed"), (champion, "champion"), *((n, n) for n in others)):
        offset = 0
        for r in sorted((r for r in runs if r.policy == name), key=lambda r: r.seed):
            for i, out in r.first_declines.items():
                if not r.mit[i]:
                    continue
                row = rows.setdefault(_decline_class(out), {})
                row[f"{tag}_declines"] = row.get(f"{tag}_declines", 0) + 1
                row[f"{tag}_retries"] = row.get(f"{tag}_retries", 0) + int(r.attempts[i]) - 1
                value = float(r.amount[i]) * bool(r.approved[i])
                row[f"{tag}_value"] = row.get(f"{tag}_value", 0.0) + value
                if tag == "champion" and ceiling is not None:
                    row["ceiling_value"] = row.get("ceiling_value", 0.0) + ceiling[offset + i]
                if tag == "champion" and bound is not None:
                    row["bound_value"] = row.get("bound_value", 0.0) + bound[offset + i]
            offset += len(r.amount)
    return [{"class": k, **v} for k, v in sorted(rows.items())]


COLUMNS = (("first_approval", "first-attempt approval %", 100, 2),
           ("approval", "payment approval %", 100, 2),
           ("net_value", "net value / payment", 1, 1),
           ("recovered_value", "recovered value / payment", 1, 1),
           ("cost", "cost / payment", 1, 2),
           ("attempts", "attempts / payment", 1, 3),
           ("violations", "violations / payment", 1, 4))  # fmt: skip


def markdown(c: Comparison, title: str, command: str) -> str:
    lines = [f"# {title}", "", f"`{command}`", "",
             f"{c.payments:,} payments per policy ({len(c.seeds)} seeds: "
             f"{', '.join(map(str, c.seeds))}); 95% intervals in brackets.", "",
             "| policy | " + " | ".join(h for _, h, _, _ in COLUMNS) + " | retries | violations |",
             "|---" * (len(COLUMNS) + 3) + "|"]  # fmt: skip
    for name, m in c.policies.items():
        cells = [fmt(m[k], s, d) for k, _, s, d in COLUMNS]
        t = c.totals[name]
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {t['retries']:.0f} | {t['violations']:.0f} |")  # fmt: skip
    if c.classes:
        lines += [
            "",
            "## Scheduled retries (MIT) by first decline class",
            "",
            "Recovered value in major units; the causal bound is the most a retrier knowing "
            "every true p recovers in expectation within the attempt budget, the ceiling one "
            "clairvoyant retry per declined payment (see app/evaluation/ceiling.py).",
            "",
            "| first decline | declines | fixed: retries | fixed: recovered | "
            "engine: retries | engine: recovered | "
            + "".join(
                f"{o.partition('+')[2]}: retries | {o.partition('+')[2]}: recovered | "
                for o in c.class_others
            )
            + "causal bound | hindsight ceiling |",
            "|---|---|---|---|---|---|" + "---|---|" * len(c.class_others) + "---|---|",
        ]
        for k in c.classes:
            g = k.get
            extra = "".join(f"{g(f'{o}_retries', 0):.0f} | {g(f'{o}_value', 0) / 100:,.0f} | "
                            for o in c.class_others)  # fmt: skip
            lines.append(f"| {k['class']} | {g('champion_declines', 0):.0f} | "
                         f"{g('fixed_retries', 0):.0f} | {g('fixed_value', 0) / 100:,.0f} | "
                         f"{g('champion_retries', 0):.0f} | {g('champion_value', 0) / 100:,.0f} | "
                         f"{extra}{_major_or_na(k, 'bound_value')} | "
                         f"{g('ceiling_value', 0) / 100:,.0f} |")  # fmt: skip
    lines += ["", "## Targets", "", "| check | value | target | result |", "|---|---|---|---|"]
    for k in c.checks:
        verdict = "context" if k["pass"] is None else "PASS" if k["pass"] else "MISS"
        lines.append(f"| {k['check']} | {k['value']} | {k['target']} | {verdict} |")
    return "\n".join(lines) + "\n"


def plot(c: Comparison, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(c.policies)
    fig, ax = plt.subplots(1, 2, figsize=(13, 5))
    y = np.arange(len(names))
    for off, key, label in ((-0.2, "first_approval", "first attempt"),
                            (0.2, "approval", "payment (after retries)")):  # fmt: skip
        m = np.array([c.policies[n][key].mean for n in names]) * 100
        lo = m - np.array([c.policies[n][key].lo for n in names]) * 100
        ax[0].barh(y + off, m, 0.4, xerr=lo, label=label, capsize=3)
    ax[0].set_yticks(y, names, fontsize=8)
    lo_x = min(c.policies[n]["first_approval"].lo for n in names) * 100 - 1
    hi_x = max(c.policies[n]["approval"].hi for n in names) * 100 + 1
    ax[0].set_xlim(lo_x, min(hi_x, 100))
    ax[0].set_xlabel("approval rate %")
    ax[0].legend(loc="lower right", fontsize=8)
    for n in names:
        t = c.totals[n]
        ax[1].scatter(t["retries"], t["recovered_value"] / 100, s=40)
        ax[1].annotate(n, (t["retries"], t["recovered_value"] / 100), fontsize=7)
    ax[1].set_xlabel("retry attempts (all seeds)")
    ax[1].set_ylabel("recovered declined value (major units)")
    ax[1].set_title("retries: value recovered vs attempts spent")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def budget_curves(c: Comparison) -> dict[str, list[tuple[float, float, float, str]]]:
    """Per retrier (its name without @cost), run with the fixed schedule's router: (attempt
    surcharge, MIT retry attempts, MIT recovered value, pair) by cost; only when some pair ran at
    a set cost (router+retrier@cost)."""
    if not any("@" in n for n in c.totals) or not c.fixed:
        return {}
    out: dict[str, list[tuple[float, float, float, str]]] = {}
    for name in _with_fixed_router(list(c.totals), c.fixed, ""):
        base, at, cost = name.partition("+")[2].partition("@")
        t = c.totals[name]
        out.setdefault(base, []).append((float(cost) if at else math.nan, t["mit_retries"],
                                         t["mit_recovered_value"], name))  # fmt: skip
    return {k: sorted(v, key=lambda x: x[1]) for k, v in out.items()}


def budget_markdown(c: Comparison) -> list[str]:
    curves = budget_curves(c)
    if not curves:
        return []
    f = c.totals[c.fixed]
    cv = c.ceiling_mit
    lines = ["", "## Retry budget: MIT value recovered against MIT retry attempts", "",
             "Each engine retrier at several surcharges per attempt on top of the route's fee "
             "(`router+retrier@cost`; no @ = AUTHPILOT_RETRY_ATTEMPT_SURCHARGE_MINOR): the "
             "cost moves its stop rule, so the points trace value against attempts. Share = "
             "of the hindsight ceiling's gain over the fixed schedule.", "",
             "| retrier | surcharge | MIT retries | vs fixed | recovered (major) | share |",
             "|---|---|---|---|---|---|",
             f"| {c.fixed.partition('+')[2]} | - | {f['mit_retries']:.0f} | 100% | "
             f"{f['mit_recovered_value'] / 100:,.0f} | 0% |"]  # fmt: skip
    for base, pts in curves.items():
        for cost, tries, value, _ in pts:
            share = ((value - f["mit_recovered_value"]) / (cv - f["mit_recovered_value"])
                     if cv is not None and cv > f["mit_recovered_value"] else math.nan)  # fmt: skip
            lines.append(f"| {base} | {'default' if math.isnan(cost) else f'{cost:g}'} | "
                         f"{tries:.0f} | {tries / f['mit_retries']:.0%} | {value / 100:,.0f} | "
                         f"{_pct_or_na(share)} |")  # fmt: skip
    if cv is not None and c.bound_mit is not None:
        mv = f["mit_recovered_value"]
        share = (c.bound_mit - mv) / (cv - mv) if cv > mv else math.nan
        lines.append(f"| causal bound (expected, knowing every true p) | - | "
                     f"{ATTEMPT_BUDGET * f['mit_retries']:.0f} | {ATTEMPT_BUDGET:.0%} | "
                     f"{c.bound_mit / 100:,.0f} | {_pct_or_na(share)} |")  # fmt: skip
    if cv is not None:
        lines.append(f"| hindsight ceiling | - | - | - | {cv / 100:,.0f} | 100% |")
    return lines


def _major_or_na(row: dict[str, Any], key: str) -> str:
    return f"{row[key] / 100:,.0f}" if key in row else "n/a"


def _pct_or_na(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.0%}"


def plot_budget(c: Comparison, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for base, pts in budget_curves(c).items():
        ax.plot([p[1] for p in pts], [p[2] / 100 for p in pts], "o-", label=base)
        for cost, x, y, _ in pts:
            ax.annotate("default" if math.isnan(cost) else f"{cost:g}", (x, y / 100), fontsize=7)
    f = c.totals[c.fixed]
    ax.scatter([f["mit_retries"]], [f["mit_recovered_value"] / 100], marker="s", color="k",
               label=c.fixed.partition("+")[2], zorder=3)  # fmt: skip
    if c.ceiling_mit is not None:
        ax.axhline(c.ceiling_mit / 100, color="grey", ls="--", label="hindsight ceiling")
    ax.set_xlabel("MIT retry attempts (all seeds)")
    ax.set_ylabel("MIT declined value recovered (major units)")
    ax.set_title("retry budget: value against attempts (labels: surcharge per attempt)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(c: Comparison, out: Path, title: str, command: str,
          adaptation: Adaptation | None = None) -> Path:  # fmt: skip
    """report.md, summary.json, policies.png; with `adaptation`, its section (and
    adaptation.png when the window holds an event)."""
    out.mkdir(parents=True, exist_ok=True)
    plot(c, out / "policies.png")
    md = markdown(c, title, command) + "\n![policies](policies.png)\n"
    if budget_curves(c):
        plot_budget(c, out / "retry_budget.png")
        md += "\n".join(budget_markdown(c)) + "\n\n![retry budget](retry_budget.png)\n"
    summary: dict[str, Any] = {
        "payments": c.payments, "seeds": c.seeds, "checks": c.checks,
        "policies": {n: {k: e.__dict__ for k, e in m.items()} for n, m in c.policies.items()},
        "totals": c.totals, "mit_by_decline_class": c.classes,
        "ceiling_mit": c.ceiling_mit, "bound_mit": c.bound_mit,
    }  # fmt: skip
    if adaptation is not None:
        from app.evaluation import adaptation as adapt

        md += "\n" + adapt.markdown(adaptation)
        if adaptation.incidents:
            adapt.plot(adaptation, out / "adaptation.png")
            md += "\n![adaptation](adaptation.png)\n"
        summary["adaptation"] = adapt.to_json(adaptation)
    (out / "report.md").write_text(md)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    return out / "report.md"

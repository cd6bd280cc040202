"""One evaluation on several logged histories: each target's verdict per history, side by side.

The report's intervals are over the evaluated payments given one history and the one model
trained on it; the history is a draw too. Measured (issue 16, 3 x 10,000 payments, history
seeds 101-103): the steady share of the oracle's uplift 72 / 74 / 61% and the issuer shift's
56 / 74 / 62%, against intervals of +-3-4 and +-7 points on one history. A target that passes
on one history of three is not met. `evaluate-policy --history-seeds` runs the whole
evaluation once per history (each its own report under history-<seed>/) and writes, beside
them, every target's value per history and on how many it passes (`merge`, `markdown`,
`plot`). It pools nothing: an interval clustered by history needs more histories than the
three a session can afford, and a verdict count does not pretend to be one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
# a check's name may carry a figure of its history ("share of the oracle's uplift captured
# (oracle+engine uplift 4.00 [1.59, 6.41] pp)"): a parenthesis holding a decimal is left out of
# the name the histories are lined up by
_FIGURE = re.compile(r"\s*\([^()]*\d\.\d[^()]*\)")


@dataclass(frozen=True)
class Row:
    """One check across the histories (None where a history's report lacks it)."""

    check: str
    target: str
    values: list[str | None]
    verdicts: list[bool | None]  # per history: PASS, MISS, or None (context or absent)

    @property
    def passes(self) -> int:
        return sum(v is True for v in self.verdicts)

    @property
    def judged(self) -> int:
        return sum(v is not None for v in self.verdicts)


@dataclass(frozen=True)
class Across:
    seeds: list[int]
    rows: list[Row] = field(default_factory=list)


def merge(seeds: list[int], checks: list[list[dict[str, Any]]]) -> Across:
    """Rows in the first-seen order of the checks of every history (`checks[i]` is history
    seeds[i]'s list, report.Comparison's format), lined up by `key`."""
    if len(seeds) != len(checks):
        raise ValueError(f"{len(seeds)} history seeds but {len(checks)} check lists")
    order: list[str] = []
    by: list[dict[str, dict[str, Any]]] = []
    for cs in checks:
        d = {}
        for c in cs:
            name = key(c["check"])
            d[name] = c
            if name not in order:
                order.append(name)
        by.append(d)
    rows = []
    for name in order:
        found = [d.get(name) for d in by]
        target = next(c["target"] for c in found if c is not None)
        rows.append(Row(name, target, [None if c is None else str(c["value"]) for c in found],
                        [None if c is None else c["pass"] for c in found]))  # fmt: skip
    return Across(list(seeds), rows)


def key(check: str) -> str:
    """The name a check is lined up by across histories (its history's figures left out)."""
    return _FIGURE.sub("", check)


def markdown(a: Across, command: str) -> str:
    """The per-history table: targets first (with 'passes on k of n'), then context."""
    head = " | ".join(f"history {s}" for s in a.seeds)
    lines = [
        "# Evaluation across histories", "",
        f"`{command}`", "",
        f"The same evaluation on {len(a.seeds)} logged histories (history seeds "
        f"{', '.join(map(str, a.seeds))}), each with the model trained on it; each history's "
        "full report is in history-<seed>/. A target is met when it passes on every history.",
        "",
        f"| check | target | {head} | passes |",
        "|---|---|" + "---|" * len(a.seeds) + "---|",
    ]  # fmt: skip
    judged = [r for r in a.rows if r.judged]
    for r in [*judged, *(r for r in a.rows if not r.judged)]:
        cells = " | ".join(_cell(v, k) for v, k in zip(r.values, r.verdicts, strict=True))
        passes = f"{r.passes} of {r.judged}" if r.judged else "context"
        lines.append(f"| {r.check} | {r.target} | {cells} | {passes} |")
    met = sum(r.passes == r.judged == len(a.seeds) for r in judged)
    lines += ["", f"Targets met on every history: {met} of {len(judged)}.", "",
              "![histories](histories.png)", ""]  # fmt: skip
    return "\n".join(lines)


def _cell(value: str | None, verdict: bool | None) -> str:
    if value is None:
        return "-"
    return value if verdict is None else f"{value} {'PASS' if verdict else 'MISS'}"


def leading_number(value: str | None) -> float | None:
    """The first number of a check's value ('72% [69%, 76%]' -> 72.0; 'not reached' -> None)."""
    m = _NUMBER.search(value or "")
    return float(m.group()) if m else None


def plotted(check: str, value: str | None) -> list[float]:
    """What a check's value puts on its panel: every seed's number for a per-seed check ('nr,
    305, nr' -> [305]; '6, 8, 12' -> all three), else the leading number (not the interval)."""
    if "per seed" in check:
        return [float(v) for v in _NUMBER.findall(value or "")]
    x = leading_number(value)
    return [] if x is None else [x]


def plot(a: Across, path: Path) -> None:
    """One panel per judged check with a number, on its own scale: its value on each history
    (`plotted`; filled: PASS, open: MISS) and the target's threshold (dashed; both ends for
    +-)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in a.rows if r.judged and any(plotted(r.check, v) for v in r.values)]
    fig, axes = plt.subplots(max(len(rows), 1), 1, figsize=(8, 0.75 * max(len(rows), 1) + 0.8),
                             squeeze=False)  # fmt: skip
    for ax, r in zip(axes[:, 0], rows, strict=False):
        for j, (v, k) in enumerate(zip(r.values, r.verdicts, strict=True)):
            xs = plotted(r.check, v)
            if xs:
                ax.scatter(xs, [0] * len(xs), s=45, color=f"C{j}",
                           facecolors=f"C{j}" if k else "none",
                           label=f"history {a.seeds[j]}")  # fmt: skip
        bar = leading_number(r.target)
        if bar is not None:
            for x in (-bar, bar) if "+-" in r.target else (bar,):
                ax.axvline(x, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks([])
        ax.set_title(f"{_short(r.check)}  [{r.target}]", fontsize=7, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    if rows:
        axes[0, 0].legend(fontsize=7, loc="upper right", ncol=len(a.seeds))
    fig.suptitle("targets per history (filled = PASS, open = MISS, dashed = target)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _short(name: str, width: int = 90) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


def write(a: Across, out: Path, command: str) -> Path:
    """report.md, summary.json and histories.png in `out` (the per-history reports beside)."""
    out.mkdir(parents=True, exist_ok=True)
    plot(a, out / "histories.png")
    (out / "report.md").write_text(markdown(a, command))
    rows = [{"check": r.check, "target": r.target, "values": r.values, "pass": r.verdicts,
             "passes": r.passes, "judged": r.judged} for r in a.rows]  # fmt: skip
    (out / "summary.json").write_text(json.dumps({"history_seeds": a.seeds, "checks": rows},
                                                 indent=1))  # fmt: skip
    return out / "report.md"

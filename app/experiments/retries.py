"""`authpilot report retries`: was the retry agent right about p_recover where it retried?

The recovery model's test metrics are read on the history's own retries, at the waits that
history's policy chose. In closed loop the engine retries at the argmax of ~20 candidate times,
which is where its estimates are most optimistic (evaluate-policy, steady, 3 x 60,000: mean
p_recover 0.806 at the chosen times against a realized 0.694, with a test log loss of 0.31).
This report measures the same gap on the worker's own records: every RETRY decision with a
p_recover is joined with the outcome of the attempt it scheduled (payment_id, attempt + 1) and
with the decline it answered (payment_id, attempt: its response code gives the class).

Input: an event-log directory as `authpilot export --from-topics` writes it (retry_decisions/
and outcomes/ parts, app.lifecycle.export), or single retry_decisions.parquet|jsonl and
outcomes.parquet|jsonl files (app.experiments.eventlog's layout), or the topics themselves
(app.experiments.kafka_log.read_retry_kafka). Retries whose attempt has no
outcome in the log yet are counted as pending, not as declines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

from app.experiments.eventlog import Progress, ReportError, concat, parts_of, read_parts
from app.experiments.stats import wilson_ci
from app.retry.engine import decline_class

BINS = (0.0, 0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0)  # reliability bins of p_recover


@dataclass(frozen=True)
class Cell:
    """Retries of one group: sent, answered, mean p_recover and realized approval of the
    answered ones (with a 95% interval), and the gap p - realized in points."""

    group: tuple[str, ...]
    sent: int
    answered: int
    p_mean: float
    approved: float
    lo: float
    hi: float

    @property
    def gap_points(self) -> float:
        return 100.0 * (self.p_mean - self.approved)


@dataclass(frozen=True)
class RetryReport:
    source: str
    retries: int  # RETRY decisions with a p_recover
    pending: int  # ... whose attempt has no outcome in the log
    overall: Cell
    by_kind: list[Cell] = field(default_factory=list)  # scheduled / cascade / step-up
    by_class: list[Cell] = field(default_factory=list)  # scheduled: class x source x attempt
    by_choice: list[Cell] = field(default_factory=list)  # scheduled: exploited / explored
    reliability: list[Cell] = field(default_factory=list)  # scheduled: by p_recover bin


def _cell(group: tuple[str, ...], rows: pd.DataFrame) -> Cell:
    done = rows[rows["answered"]]
    n = len(done)
    rate = wilson_ci(int(done["ok"].sum()), n)
    return Cell(group, len(rows), n, float(done["p_recover"].mean()) if n else math.nan,
                rate.mean, rate.lo, rate.hi)  # fmt: skip


def _cells(rows: pd.DataFrame, by: list[str]) -> list[Cell]:
    return [_cell(tuple(str(v) for v in (key if isinstance(key, tuple) else (key,))), g)
            for key, g in rows.groupby(by, sort=True)]  # fmt: skip


def joined(retries: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """One row per RETRY decision with a p_recover: its kind, decline class, source (MODEL /
    TABLE), whether it explored, and the outcome of the attempt it scheduled (answered, ok)."""
    r = retries[(retries["action"] == "RETRY") & retries["p_recover"].notna()].copy()
    r = r.drop_duplicates("request_id", keep="last")
    out = outcomes.drop_duplicates(["payment_id", "attempt"], keep="last")
    r["attempt"] = r["attempt"].astype(int)
    declined = out[["payment_id", "attempt", "response_code"]]
    r = r.merge(declined, on=["payment_id", "attempt"], how="left")
    nxt = out[["payment_id", "attempt", "approved"]].assign(attempt=out["attempt"] - 1)
    r = r.merge(nxt, on=["payment_id", "attempt"], how="left")
    codes = [list(c) if c is not None and not isinstance(c, float) else []
             for c in r["reason_codes"]]  # fmt: skip
    r["kind"] = ["cascade" if any(x.startswith("CASCADE:") for x in c)
                 else "step-up" if bool(t) else "scheduled"
                 for c, t in zip(codes, r["three_ds"], strict=True)]  # fmt: skip
    # the model version that priced it (a hot swap splits the rows), the table, or neither
    versions = r["model_version"]
    r["source"] = [f"model {v}" if "RECOVERY:MODEL" in c else "table" if "RECOVERY:TABLE" in c
                   else "rules" for c, v in zip(codes, versions, strict=True)]  # fmt: skip
    r["choice"] = ["explored" if "EXPLORE" in c else "best" for c in codes]
    r["class"] = [decline_class(str(c)) if isinstance(c, str) else "unknown"
                  for c in r["response_code"]]  # fmt: skip
    r["retry"] = ["3+" if a >= 3 else str(a) for a in r["attempt"]]  # the k-th retry
    r["answered"] = r["approved"].notna()
    r["ok"] = r["approved"].fillna(False).astype(bool)
    r["p_recover"] = pd.to_numeric(r["p_recover"]).astype(float)
    return r


def retry_report(retries: pd.DataFrame, outcomes: pd.DataFrame, source: str) -> RetryReport:
    r = joined(retries, outcomes)
    if not len(r):
        raise ReportError(f"{source}: no RETRY decisions with a p_recover")
    s = r[r["kind"] == "scheduled"].copy()
    labels = [f"{lo:.1f}-{hi:.1f}" for lo, hi in pairwise(BINS)]
    s["bin"] = pd.cut(s["p_recover"], BINS, labels=labels, include_lowest=True).astype(str)
    return RetryReport(source, len(r), int((~r["answered"]).sum()), _cell(("all",), r),
                       _cells(r, ["kind"]), _cells(s, ["class", "source", "retry"]),
                       _cells(s, ["choice"]), _cells(s, ["bin"]))  # fmt: skip


def read_retry_log(root: Path, progress: Progress | None = None,
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """(retry decisions, outcomes) of an event-log directory (module docstring)."""
    if not root.is_dir():
        raise ReportError(f"{root}: no such event-log directory")
    frames = []
    for kind, read_as in (("retry_decisions", "retry_decisions"), ("outcomes", "retry_outcomes")):
        files = parts_of(root, kind)
        if not files:
            raise ReportError(
                f"{root}: no {kind} ({kind}.parquet, {kind}.jsonl or {kind}/ "
                "with such parts; `authpilot export --from-topics` writes both)"
            )
        frames.append(concat(read_as, read_parts(files, read_as, progress)))
    return frames[0], frames[1]


def _row(c: Cell) -> str:
    def f(x: float, d: int = 3) -> str:
        return "n/a" if math.isnan(x) else f"{x:.{d}f}"

    gap = "n/a" if math.isnan(c.p_mean) else f"{c.gap_points:+.1f}"
    return (f"| {' | '.join(c.group)} | {c.sent:,} | {c.answered:,} | {f(c.p_mean)} | "
            f"{f(c.approved)} [{f(c.lo)}, {f(c.hi)}] | {gap} |")  # fmt: skip


def markdown(r: RetryReport) -> str:
    head = "| retries sent | answered | mean p_recover | realized [95%] | gap (points) |"
    sep = "|---|---|---|---|---|"

    def table(title: str, cols: list[str], cells: list[Cell]) -> list[str]:
        return ["", f"## {title}", "", f"| {' | '.join(cols)} {head}",
                "|---" * len(cols) + sep, *map(_row, cells)]  # fmt: skip

    lines = [f"# Retry report: {r.source}", "",
             f"{r.retries:,} RETRY decisions with a p_recover; {r.pending:,} of them have no "
             "outcome of the attempt they scheduled in the log yet (pending: left out of the "
             "rates). Gap = "
             "mean p_recover - realized approval: above 0 the engine retried on estimates that "
             "were too high, which also means its stop rule retried too often.", "",
             f"| all {head}", "|---" + sep, _row(r.overall)]  # fmt: skip
    lines += table("By kind", ["kind"], r.by_kind)
    lines += table("Scheduled retries by first-decline class, recovery source and retry",
                   ["class", "source", "retry"], r.by_class)  # fmt: skip
    lines += table("Scheduled retries: the engine's best time vs explored ones", ["choice"],
                   r.by_choice)  # fmt: skip
    lines += table("Scheduled retries by p_recover (reliability)", ["p_recover"], r.reliability)
    return "\n".join(lines) + "\n\n![reliability](reliability.png)\n"


def plot(r: RetryReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in r.reliability if c.answered]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", label="calibrated")
    if cells:
        p = np.array([c.p_mean for c in cells])
        y = np.array([c.approved for c in cells])
        err = np.array([[c.approved - c.lo for c in cells], [c.hi - c.approved for c in cells]])
        ax.errorbar(p, y, yerr=err, fmt="o-", capsize=3, label="scheduled retries")
        for c, x, v in zip(cells, p, y, strict=True):
            ax.annotate(f"{c.answered:,}", (x, v), textcoords="offset points", xytext=(4, -10),
                        fontsize=7)  # fmt: skip
    ax.set_xlabel("mean p_recover at the chosen time")
    ax.set_ylabel("realized approval of the retry")
    ax.set_title("Retry calibration where the engine retried")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(r: RetryReport, out: Path) -> Path:
    """report.md, summary.json and reliability.png in `out`."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    plot(r, out / "reliability.png")
    (out / "summary.json").write_text(json.dumps({
        "source": r.source, "retries": r.retries, "pending": r.pending,
        **{name: [{**c.__dict__, "gap_points": c.gap_points} for c in cells]
           for name, cells in (("overall", [r.overall]), ("by_kind", r.by_kind),
                               ("by_class", r.by_class), ("by_choice", r.by_choice),
                               ("reliability", r.reliability))},
    }, indent=1, default=float))  # fmt: skip
    path = out / "report.md"
    path.write_text(markdown(r))
    return path

"""`authpilot report experiment|shadow`: what the A/B arms and the shadow challengers did.

Inputs are the worker's own records, joined by request_id: RoutingDecision (decisions topic,
the champion's final decision after every fallback), AuthorizationOutcome (outcomes topic) and,
for shadow reports, the challengers' RoutingDecision (shadow topic, arm "shadow", one per
challenger and request). They come from an event-log directory or straight from Kafka.

Event-log directory (written by `write_event_log`, read by `read_event_log`):

    <dir>/decisions.parquet | decisions.jsonl | decisions/<part>.parquet|.jsonl
    <dir>/outcomes.parquet  | outcomes.jsonl  | outcomes/<part>...
    <dir>/shadow.parquet    | shadow.jsonl    | shadow/<part>...      (optional)

One row per record, in the shape fastavro decodes it (plain JSON objects, unions unwrapped,
`scores` a list of objects). Only the REQUIRED columns are read; extra columns are ignored.
Duplicates (Kafka delivers at least once) are dropped by request_id, keeping the last
(shadow: by request_id and model_version).

Kafka: every partition is read from its low to its high watermark as they were when the read
started (later messages are left for the next report), with a throwaway consumer group that
commits nothing; undecodable messages are counted and skipped, never fatal.

Units: the arm is assigned per payment, so the tests and guardrails compare payments; rates
per attempt are shown for context (attempts of one payment are not independent). The shadow
report evaluates the challenger per attempt on the logged attempts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from app.experiments.stats import (
    Interval,
    OffPolicy,
    Reliability,
    ZTest,
    diff_of_means,
    guardrail,
    mean_ci,
    off_policy,
    reliability,
    sequential_p_values,
    two_proportion_z,
    wilson_ci,
)
from app.routing.dispatch import SHADOW_ARM

KINDS = ("decisions", "outcomes", "shadow")
REQUIRED: dict[str, tuple[str, ...]] = {
    "decisions": (
        "request_id",
        "payment_id",
        "attempt",
        "decided_at",
        "chosen_route",
        "scores",
        "propensity",
        "arm",
        "model_version",
    ),
    "outcomes": ("request_id", "approved", "amount_minor"),
}
REQUIRED["shadow"] = REQUIRED["decisions"]
Progress = Callable[[str], None]


class ReportError(ValueError):
    """Missing or invalid input; the CLI prints the message and exits with status 2."""


# ------------------------------------------------------------------------------ event log
@dataclass(frozen=True)
class EventLog:
    """Decisions, outcomes and shadow decisions as DataFrames (REQUIRED columns, deduplicated)."""

    decisions: pd.DataFrame
    outcomes: pd.DataFrame
    shadow: pd.DataFrame
    dropped: dict[str, int]  # per kind: duplicates, and on Kafka undecodable messages
    source: str


Records = Iterable[Mapping[str, Any]] | Any  # dicts, or a pyarrow Table of the same rows


def write_event_log(
    out: Path,
    decisions: Records,
    outcomes: Records,
    shadow: Records | None = None,
    fmt: Literal["parquet", "jsonl"] = "parquet",
) -> dict[str, Path]:
    """Write RoutingDecision / AuthorizationOutcome records (dicts, or pyarrow Tables built
    column-wise for millions of rows) as an event-log directory."""
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind, rows in (("decisions", decisions), ("outcomes", outcomes), ("shadow", shadow)):
        if rows is None:
            continue
        path = out / f"{kind}.{fmt}"
        table = rows if isinstance(rows, pa.Table) else None
        if fmt == "parquet":
            table = table if table is not None else pa.Table.from_pylist(list(rows))
            pq.write_table(table, path, compression="zstd")
        else:
            with path.open("w") as f:
                for r in table.to_pylist() if table is not None else rows:
                    f.write(json.dumps(r, separators=(",", ":")) + "\n")
        files[kind] = path
    return files


def _parts(root: Path, kind: str) -> list[Path]:
    found = [root / f"{kind}.{ext}" for ext in ("parquet", "jsonl")]
    found = [p for p in found if p.is_file()]
    if (root / kind).is_dir():
        found += sorted(p for p in (root / kind).iterdir() if p.suffix in (".parquet", ".jsonl"))
    return found


def _read_part(path: Path, kind: str) -> pd.DataFrame:
    need = REQUIRED[kind]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
            raise ReportError(f"{path}: not a readable Parquet file ({exc})") from exc
        missing = [c for c in need if c not in names]
        if missing:
            raise ReportError(f"{path}: {kind} rows lack the columns {missing}")
        tbl = pq.read_table(path, columns=list(need))
        if "scores" not in need:
            return tbl.to_pandas()
        df = tbl.drop(["scores"]).to_pandas()
        df["scores"] = _scores_column(tbl.column("scores"), path)
        return df
    rows = []
    with path.open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ReportError(f"{path}:{n}: not JSON ({exc.msg})") from exc
    df = pd.DataFrame(rows)
    missing = [c for c in need if c not in df.columns] if rows else []
    if missing:
        raise ReportError(f"{path}: {kind} rows lack the fields {missing}")
    df = df.reindex(columns=list(need))
    if "scores" in need:
        df["scores"] = _scores_column(df["scores"].tolist(), path)
    return df


# scores are kept as one Arrow list<struct> column and read in long form with numpy: a
# Python loop over a million decisions' candidate lists costs seconds, the long form
# milliseconds
SCORE_FIELDS = {"route_id": pa.string(), "p_approve": pa.float64(), "score": pa.float64(),
                "fee_minor": pa.float64()}  # fmt: skip


def _scores_column(col: Any, where: Path | str) -> pd.Series:
    """RoutingDecision.scores (Arrow column or Python lists) as list<struct> with exactly the
    fields the reports read (eliminated defaults to false)."""
    arr = col if isinstance(col, pa.Array | pa.ChunkedArray) else pa.array(col)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if len(arr) == 0 or pa.types.is_null(arr.type):
        arr = pa.array([[] for _ in range(len(arr))], pa.list_(pa.struct([])))
    if not pa.types.is_list(arr.type) or not pa.types.is_struct(arr.type.value_type):
        raise ReportError(f"{where}: scores must be a list of objects, not {arr.type}")
    flat = pc.list_flatten(arr)
    names = {f.name for f in arr.type.value_type}
    missing = [k for k in SCORE_FIELDS if k not in names]
    if missing and len(flat):
        raise ReportError(f"{where}: scores lack the fields {missing}")
    fields = [
        flat.field(k).cast(t) if k in names else pa.nulls(len(flat), t)
        for k, t in SCORE_FIELDS.items()
    ]
    elim = flat.field("eliminated") if "eliminated" in names else pa.nulls(len(flat), pa.bool_())
    struct = pa.StructArray.from_arrays(
        [*fields, pc.fill_null(elim.cast(pa.bool_()), False)], [*SCORE_FIELDS, "eliminated"]
    )
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy()
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.ListArray.from_arrays(offsets, struct)))


def _long(scores: pd.Series) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(row of each score, its position in the row's list, field arrays) of a scores column."""
    arr = pa.array(scores)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    parent = pc.list_parent_indices(arr).to_numpy()
    flat = pc.list_flatten(arr)
    cols = {k: flat.field(k).to_numpy(zero_copy_only=False) for k in (*SCORE_FIELDS, "eliminated")}
    starts = np.searchsorted(parent, np.arange(len(arr)))
    return parent, np.arange(len(parent)) - starts[parent], cols


def score_of(routes: Any, scores: pd.Series) -> np.ndarray:
    """(p_approve, fee_minor) of the given route in each row's scores; nan when absent."""
    parent, _, c = _long(scores)
    out = np.full((len(scores), 2), math.nan)
    hit = c["route_id"] == np.asarray(routes, object)[parent]
    out[parent[hit], 0] = c["p_approve"][hit]
    out[parent[hit], 1] = c["fee_minor"][hit]
    return out


def _frame(kind: str, parts: list[pd.DataFrame]) -> tuple[pd.DataFrame, int]:
    """Concatenate, drop duplicates (keep the last delivery), check what the reports divide by."""
    parts = [p for p in parts if len(p)]
    df = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({c: [] for c in REQUIRED[kind]})
    )
    key = ["request_id", "model_version"] if kind == "shadow" else ["request_id"]
    n = len(df)
    df = df.drop_duplicates(key, keep="last").reset_index(drop=True)
    if kind != "outcomes":
        df["arm"] = df["arm"].fillna("default")
        df["propensity"] = pd.to_numeric(df["propensity"], errors="coerce")
        if not isinstance(df["scores"].dtype, pd.ArrowDtype):  # no rows: an empty column
            df["scores"] = _scores_column(df["scores"].tolist(), kind)
        chosen = score_of(df["chosen_route"], df["scores"])
        df["p_chosen"], df["fee_chosen"] = chosen[:, 0], chosen[:, 1]
    else:
        df["approved"] = df["approved"].astype(bool)
        df["amount_minor"] = pd.to_numeric(df["amount_minor"]).astype(float)
    return df, n - len(df)


def read_event_log(
    root: Path, need_shadow: bool = False, progress: Progress | None = None
) -> EventLog:
    """Load an event-log directory (format in the module docstring)."""
    if not root.is_dir():
        raise ReportError(f"{root}: no such event-log directory")
    frames, dropped = {}, {}
    for kind in KINDS:
        files = _parts(root, kind)
        if not files and (kind != "shadow" or need_shadow):
            raise ReportError(
                f"{root}: no {kind} ({kind}.parquet, {kind}.jsonl or {kind}/ with such parts)"
            )
        parts = []
        for path in files:
            parts.append(_read_part(path, kind))
            if progress:
                progress(f"read {path}: {len(parts[-1]):,} rows")
        frames[kind], dropped[kind] = _frame(kind, parts)
    return EventLog(frames["decisions"], frames["outcomes"], frames["shadow"], dropped, str(root))


def read_kafka(
    settings: Any,
    bootstrap: str | None = None,
    need_shadow: bool = False,
    progress: Progress | None = None,
    idle_timeout: float = 60.0,
) -> EventLog:
    """Read the decisions, outcomes (and shadow) topics from the beginning to the end offsets
    they had when the read started."""
    from app.config import confluent_config
    from app.contracts.codec import Codec

    if bootstrap:
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    conf = confluent_config(settings)
    codec = Codec(settings)
    topics = {
        "decisions": (settings.topic_decisions, codec.decision),
        "outcomes": (settings.topic_outcomes, codec.outcome),
        "shadow": (settings.topic_shadow, codec.decision),
    }
    frames, dropped = {}, {}
    for kind, (topic, serde) in topics.items():
        rows, bad = _read_topic(
            conf, topic, serde.decode, kind == "shadow" and not need_shadow, progress, idle_timeout
        )
        df = pd.DataFrame(rows).reindex(columns=list(REQUIRED[kind])) if rows else None
        frames[kind], dropped[kind] = _frame(kind, [df] if df is not None else [])
        dropped[kind] += bad
    source = f"kafka {conf['bootstrap.servers']}"
    return EventLog(frames["decisions"], frames["outcomes"], frames["shadow"], dropped, source)


def _read_topic(
    conf: dict[str, str],
    topic: str,
    decode: Callable[[bytes], dict[str, Any]],
    optional: bool,
    progress: Progress | None,
    idle_timeout: float,
) -> tuple[list[dict[str, Any]], int]:
    """(decoded records, undecodable count) of one topic up to its current end offsets."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    c = Consumer(
        {
            **conf,
            "group.id": f"authpilot-report-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    try:
        try:
            meta = c.list_topics(topic, timeout=15).topics.get(topic)
        except KafkaException as exc:
            raise ReportError(f"cannot reach Kafka at {conf['bootstrap.servers']}: {exc}") from exc
        if meta is None or meta.error is not None or not meta.partitions:
            if optional:
                return [], 0
            raise ReportError(f"topic {topic} does not exist on {conf['bootstrap.servers']}")
        end: dict[int, int] = {}
        assign = []
        total = 0
        for p in meta.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
            if hi > lo:
                end[p] = hi
                assign.append(TopicPartition(topic, p, lo))
                total += hi - lo
        if not assign:
            return [], 0
        c.assign(assign)
        rows: list[dict[str, Any]] = []
        bad = seen = 0
        last_msg = last_note = time.monotonic()
        while end:
            msgs = c.consume(1000, timeout=1.0)
            now = time.monotonic()
            if not msgs and now - last_msg > idle_timeout:
                raise ReportError(
                    f"{topic}: nothing arrived for {idle_timeout:.0f} s with "
                    f"partitions {sorted(end)} short of their end offsets"
                )
            for m in msgs:
                p = m.partition()
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        end.pop(p, None)  # also ends a partition whose last offset is a marker
                        continue
                    raise ReportError(f"{topic}: {m.error()}")
                last_msg = now
                if p not in end or m.offset() >= end[p]:
                    continue  # arrived after the read started
                seen += 1
                try:
                    rows.append(decode(m.value()))
                except ValueError:  # codec.DecodeError: a dead letter, not our business here
                    bad += 1
                if m.offset() >= end[p] - 1:
                    end.pop(p)
            if progress and (now - last_note > 2.0 or not end):
                last_note = now
                progress(f"{topic}: {seen:,}/{total:,} messages ({seen / total:.0%})")
        return rows, bad
    finally:
        c.close()


# ------------------------------------------------------------------------------ experiment
@dataclass(frozen=True)
class ArmStats:
    arm: str
    payments: int
    attempts: int
    approved_payments: int
    approved_attempts: int
    approval_per_payment: Interval
    approval_per_attempt: Interval
    approved_value_minor: float
    approved_value_per_payment: Interval
    attempts_per_payment: Interval
    fees_per_payment: Interval


@dataclass(frozen=True)
class Guardrail:
    metric: str
    diff: Interval  # arm - control, higher is worse
    margin: float  # absolute, in the metric's unit
    verdict: str


@dataclass(frozen=True)
class Comparison:
    arm: str
    control: str
    z: ZTest  # approval per payment, arm - control
    always_valid_p: float  # mSPRT running minimum over the looks
    guardrails: list[Guardrail]


@dataclass(frozen=True)
class Sequential:
    arm: str
    payments: np.ndarray  # payments of both arms seen at each look
    always_valid: np.ndarray
    naive: np.ndarray  # the repeated z-test's p-value at each look (invalid under peeking)


@dataclass(frozen=True)
class ExperimentReport:
    source: str
    control: str | None
    arms: dict[str, ArmStats]
    comparisons: list[Comparison]
    sequential: list[Sequential]
    pending: int  # decisions with no outcome yet (left out)
    orphans: int  # outcomes with no decision (left out)
    mixed_arm_payments: int  # payments whose attempts carry two arms: should be 0
    dropped: dict[str, int]


GUARDRAILS = ("attempts_per_payment", "fees_per_payment")


def attempts_table(log: EventLog) -> pd.DataFrame:
    """Decisions with their outcome (inner join on request_id)."""
    if not len(log.decisions):
        raise ReportError(f"{log.source}: no decisions")
    out = log.outcomes[["request_id", "approved", "amount_minor"]]
    return log.decisions.merge(out, on="request_id", how="inner", validate="one_to_one")


def payments_table(attempts: pd.DataFrame) -> pd.DataFrame:
    """One row per payment: arm, attempts, approved, approved value, fees, first decision time."""
    a = attempts.sort_values(["payment_id", "attempt", "decided_at"])
    a = a.assign(value=a["amount_minor"] * a["approved"], fee=a["fee_chosen"].fillna(0.0))
    g = a.groupby("payment_id", sort=False)
    return pd.DataFrame(
        {
            "arm": g["arm"].first(),
            "arms": g["arm"].nunique(),
            "attempts": g.size(),
            "approved": g["approved"].any(),
            "approved_attempts": g["approved"].sum(),
            "approved_value": g["value"].max(),
            "fees": g["fee"].sum(),
            "first_at": g["decided_at"].min(),
        }
    )


def _arm_stats(arm: str, p: pd.DataFrame) -> ArmStats:
    n, k = len(p), int(p["attempts"].sum())
    x, xa = int(p["approved"].sum()), int(p["approved_attempts"].sum())
    return ArmStats(
        arm,
        n,
        k,
        x,
        xa,
        wilson_ci(x, n),
        wilson_ci(xa, k),
        float(p["approved_value"].sum()),
        mean_ci(p["approved_value"].to_numpy()),
        mean_ci(p["attempts"].to_numpy()),
        mean_ci(p["fees"].to_numpy()),
    )


def _sequential(
    arm: str, ctl: pd.DataFrame, trt: pd.DataFrame, looks: int, tau2: float
) -> Sequential:
    """Cumulative counts at `looks` evenly spaced quantiles of the first-decision times."""
    t1 = ctl.sort_values("first_at")
    t2 = trt.sort_values("first_at")
    at = np.quantile(
        np.concatenate([t1["first_at"], t2["first_at"]]), np.linspace(0, 1, looks + 1)[1:]
    )
    n1 = np.searchsorted(t1["first_at"].to_numpy(), at, side="right")
    n2 = np.searchsorted(t2["first_at"].to_numpy(), at, side="right")
    c1 = np.concatenate([[0], np.cumsum(t1["approved"].to_numpy())])[n1]
    c2 = np.concatenate([[0], np.cumsum(t2["approved"].to_numpy())])[n2]
    naive = np.array(
        [
            two_proportion_z(a, m, b, k).p_value if m and k else 1.0
            for a, m, b, k in zip(c1, n1, c2, n2, strict=True)
        ]
    )
    return Sequential(arm, n1 + n2, sequential_p_values(c1, n1, c2, n2, tau2), naive)


def experiment_report(
    log: EventLog,
    control: str | None = None,
    guardrail_margin: float = 0.02,
    looks: int = 50,
    tau2: float = 1e-4,
) -> ExperimentReport:
    """Per-arm figures and every arm against the control (guardrail_margin: relative to the
    control's mean, e.g. 0.02 = attempts or fees per payment may rise by at most 2%)."""
    att = attempts_table(log)
    if not len(att):
        raise ReportError(f"{log.source}: no decision has an outcome (joined on request_id)")
    pay = payments_table(att)
    arms = sorted(pay["arm"].unique())
    if control is None and len(arms) > 1:
        control = next((a for a in ("control", "holdout") if a in arms), None)
        if control is None:
            raise ReportError(f"no arm named control or holdout: pass --control, one of {arms}")
    if control is not None and control not in arms:
        raise ReportError(f"control arm {control!r} has no payments; arms: {arms}")
    by_arm = {a: pay[pay["arm"] == a] for a in arms}
    stats = {a: _arm_stats(a, p) for a, p in by_arm.items()}
    comps, seqs = [], []
    for a in arms:
        if control is None or a == control:
            continue
        ctl, trt = by_arm[control], by_arm[a]
        s_ctl, s_trt = stats[control], stats[a]
        seq = _sequential(a, ctl, trt, looks, tau2)
        rails = []
        for metric, col in zip(GUARDRAILS, ("attempts", "fees"), strict=True):
            d = diff_of_means(ctl[col].to_numpy(), trt[col].to_numpy())
            margin = guardrail_margin * getattr(s_ctl, metric).mean
            rails.append(Guardrail(metric, d, margin, guardrail(d, margin)))
        z = two_proportion_z(
            s_ctl.approved_payments, s_ctl.payments, s_trt.approved_payments, s_trt.payments
        )
        comps.append(Comparison(a, control, z, float(seq.always_valid[-1]), rails))
        seqs.append(seq)
    orphans = int((~log.outcomes["request_id"].isin(log.decisions["request_id"])).sum())
    return ExperimentReport(
        log.source,
        control,
        stats,
        comps,
        seqs,
        len(log.decisions) - len(att),
        orphans,
        int((pay["arms"] > 1).sum()),
        dict(log.dropped),
    )


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


# ------------------------------------------------------------------------------ shadow
@dataclass(frozen=True)
class ChallengerStats:
    model_version: str
    attempts: int  # champion attempts with an outcome and this challenger's shadow decision
    agreement: Interval  # challenger's chosen route == champion's final route
    calibration: Reliability  # challenger's p_approve where it agreed, against the outcome
    logged_approval: Interval  # what the champion's routes achieved on the same attempts
    greedy_agreement: float  # share where the challenger's best route is the logged one
    estimate: OffPolicy  # approval per attempt of the challenger's greedy route
    bad_propensity: int  # rows left out of the estimate: propensity missing or not in (0, 1]


@dataclass(frozen=True)
class ShadowReport:
    source: str
    champion_attempts: int
    challengers: list[ChallengerStats]
    dropped: dict[str, int]


def greedy_routes(scores: pd.Series) -> np.ndarray:
    """The route each decision's policy ranks first, without exploration (None for an empty
    list). The rule of app.routing.choice.choose, vectorized (a contract test holds the two
    equal): highest score among the non-eliminated routes (all when every route is), ties to
    the cheaper, then to the earlier candidate."""
    parent, pos, c = _long(scores)
    out = np.full(len(scores), None, object)
    if not len(parent):
        return out
    elig = ~c["eliminated"]
    any_elig = np.bincount(parent, elig, minlength=len(scores)) > 0
    elig |= ~any_elig[parent]
    order = np.lexsort((pos, c["fee_minor"], -c["score"], ~elig, parent))
    first = order[np.r_[True, parent[order][1:] != parent[order][:-1]]]
    out[parent[first]] = c["route_id"][first]
    return out


def challenger_stats(
    model_version: str, attempts: pd.DataFrame, shadow: pd.DataFrame, bins: int = 10
) -> ChallengerStats:
    """Agreement, calibration and off-policy approval of one challenger on the logged attempts.

    The target policy is the challenger's greedy route (pi = 1 on it). Its exploration draw is
    not used: it hashes the same request id as the champion's, so the two explore together
    and an indicator of the challenger's explored pick would be correlated with the log.
    DR's reward model is the challenger's own p_approve (DR stays unbiased when it is wrong)."""
    sh = shadow[["request_id", "chosen_route", "scores", "p_chosen"]]
    j = attempts.merge(sh, on="request_id", suffixes=("", "_ch"), validate="one_to_one")
    n = len(j)
    agree = (j["chosen_route"] == j["chosen_route_ch"]).to_numpy()
    y = j["approved"].to_numpy(float)
    cal = reliability(j["p_chosen_ch"].to_numpy()[agree], y[agree], bins)
    greedy = greedy_routes(j["scores_ch"])
    q = score_of(greedy, j["scores_ch"])[:, 0]
    q_logged = score_of(j["chosen_route"], j["scores_ch"])[:, 0]
    pi = (j["chosen_route"].to_numpy(object) == greedy).astype(float)
    mu = j["propensity"].to_numpy(float)
    ok = (mu > 0) & (mu <= 1) & np.isfinite(mu)
    q_logged = np.where(np.isfinite(q_logged), q_logged, q)  # only where pi = 0 (w = 0)
    est = off_policy(y[ok], mu[ok], pi[ok], q_logged[ok], q[ok])
    return ChallengerStats(
        model_version,
        n,
        wilson_ci(int(agree.sum()), n),
        cal,
        wilson_ci(int(y.sum()), n),
        float(pi.mean()) if n else math.nan,
        est,
        int((~ok).sum()),
    )


def shadow_report(log: EventLog, challenger: str | None = None, bins: int = 10) -> ShadowReport:
    """One ChallengerStats per model_version on the shadow log (or only `challenger`)."""
    att = attempts_table(log)
    att = att[att["arm"] != SHADOW_ARM]
    sh = log.shadow
    if not len(sh):
        raise ReportError(f"{log.source}: no shadow decisions")
    versions = sorted(sh["model_version"].fillna("unknown").unique())
    if challenger is not None:
        if challenger not in versions:
            raise ReportError(f"challenger {challenger!r} has no shadow decisions; {versions}")
        versions = [challenger]
    out = []
    for v in versions:
        s = challenger_stats(v, att, sh[sh["model_version"].fillna("unknown") == v], bins)
        if s.attempts == 0:
            raise ReportError(
                f"challenger {v}: no shadow decision matches a decided attempt "
                "with an outcome (joined on request_id)"
            )
        out.append(s)
    return ShadowReport(log.source, len(att), out, dict(log.dropped))


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


# ------------------------------------------------------------------------------ output, CLI
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="authpilot report", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="kind", required=True)
    for name, helptext in (
        ("experiment", "A/B arms against the control"),
        ("shadow", "shadow challengers against the champion"),
    ):
        c = sub.add_parser(name, help=helptext)
        src = c.add_mutually_exclusive_group(required=True)
        src.add_argument("--log", type=Path, help="event-log directory (see the README)")
        src.add_argument("--bootstrap", help="read the topics from this Kafka cluster")
        c.add_argument("--out", type=Path, default=Path(f"reports/{name}"))
        c.add_argument(
            "--idle-timeout",
            type=float,
            default=60.0,
            help="Kafka: give up after this many seconds without a message",
        )
        c.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
        if name == "experiment":
            c.add_argument("--control", help="control arm (default: control, else holdout)")
            c.add_argument(
                "--guardrail-margin",
                type=float,
                default=0.02,
                help="allowed rise of attempts/fees per payment, relative",
            )
            c.add_argument("--looks", type=int, default=50, help="looks of the sequential plot")
            c.add_argument(
                "--tau2", type=float, default=1e-4, help="mSPRT mixture variance of the difference"
            )
        else:
            c.add_argument("--challenger", help="only this model_version")
            c.add_argument("--bins", type=int, default=10, help="calibration bins")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.monotonic()

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    shadow = args.kind == "shadow"
    try:
        if args.log is not None:
            log = read_event_log(args.log, shadow, progress)
        else:
            from app.config import get_settings

            log = read_kafka(get_settings(), args.bootstrap, shadow, progress, args.idle_timeout)
        progress(
            f"{len(log.decisions):,} decisions, {len(log.outcomes):,} outcomes, "
            f"{len(log.shadow):,} shadow decisions"
        )
        r: ExperimentReport | ShadowReport
        if shadow:
            r = shadow_report(log, args.challenger, args.bins)
        else:
            r = experiment_report(log, args.control, args.guardrail_margin, args.looks, args.tau2)
    except ReportError as exc:
        print(f"authpilot report {args.kind}: error: {exc}", file=sys.stderr)
        return 2
    path = write_report(r, args.out)
    print(path.read_text())
    print(f"wrote {path} and plots in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Event logs: the worker's own records as DataFrames, read from a directory or written to one.

Records, joined by request_id: RoutingDecision (decisions topic, the champion's final decision
after every fallback), AuthorizationOutcome (outcomes topic) and, for shadow reports, the
challengers' RoutingDecision (shadow topic, arm "shadow", one per challenger and request).
kafka_log.read_kafka reads the same records straight from the topics.

Event-log directory (written by `write_event_log`, read by `read_event_log`):

    <dir>/decisions.parquet | decisions.jsonl | decisions/<part>.parquet|.jsonl
    <dir>/outcomes.parquet  | outcomes.jsonl  | outcomes/<part>...
    <dir>/shadow.parquet    | shadow.jsonl    | shadow/<part>...      (optional)

One row per record, in the shape fastavro decodes it (plain JSON objects, unions unwrapped,
`scores` a list of objects). Only the REQUIRED columns are read; extra columns are ignored.
Duplicates (Kafka delivers at least once) are dropped by request_id, keeping the last
(shadow: by request_id and model_version).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from app.experiments.assignment import DEFAULT_ARM

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
# the retry report's (app.experiments.retries): RetryDecisions, and outcomes by payment/attempt
REQUIRED["retry_decisions"] = ("request_id", "payment_id", "attempt", "action", "p_recover",
                               "reason_codes", "model_version", "three_ds")  # fmt: skip
REQUIRED["retry_outcomes"] = ("request_id", "payment_id", "attempt", "approved", "response_code")
Progress = Callable[[str], None]


class ReportError(ValueError):
    """Missing or invalid input; the CLI prints the message and exits with status 2."""


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


def parts_of(root: Path, kind: str) -> list[Path]:
    found = [root / f"{kind}.{ext}" for ext in ("parquet", "jsonl")]
    found = [p for p in found if p.is_file()]
    if (root / kind).is_dir():
        found += sorted(p for p in (root / kind).iterdir() if p.suffix in (".parquet", ".jsonl"))
    return found


def read_part(path: Path, kind: str) -> pd.DataFrame:
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
        df["scores"] = scores_column(tbl.column("scores"), path)
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
        df["scores"] = scores_column(df["scores"].tolist(), path)
    return df


# scores are kept as one Arrow list<struct> column and read in long form with numpy: a
# Python loop over a million decisions' candidate lists costs seconds, the long form
# milliseconds
SCORE_FIELDS = {"route_id": pa.string(), "p_approve": pa.float64(), "score": pa.float64(),
                "fee_minor": pa.float64()}  # fmt: skip


def scores_column(col: Any, where: Path | str) -> pd.Series:
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


def long_scores(scores: pd.Series) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
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
    parent, _, c = long_scores(scores)
    out = np.full((len(scores), 2), math.nan)
    hit = c["route_id"] == np.asarray(routes, object)[parent]
    out[parent[hit], 0] = c["p_approve"][hit]
    out[parent[hit], 1] = c["fee_minor"][hit]
    return out


def concat(kind: str, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The parts with rows as one frame; none: an empty frame with `kind`'s REQUIRED columns."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: [] for c in REQUIRED[kind]})
    return pd.concat(parts, ignore_index=True)


def read_parts(files: list[Path], kind: str, progress: Progress | None) -> list[pd.DataFrame]:
    """Each file's REQUIRED columns of `kind` (read_part), with a progress line per file."""
    parts = []
    for path in files:
        parts.append(read_part(path, kind))
        if progress:
            progress(f"read {path}: {len(parts[-1]):,} rows")
    return parts


def to_frame(kind: str, parts: list[pd.DataFrame]) -> tuple[pd.DataFrame, int]:
    """Concatenate, drop duplicates (keep the last delivery), check what the reports divide by."""
    df = concat(kind, parts)
    key = ["request_id", "model_version"] if kind == "shadow" else ["request_id"]
    n = len(df)
    df = df.drop_duplicates(key, keep="last").reset_index(drop=True)
    if kind != "outcomes":
        df["arm"] = df["arm"].fillna(DEFAULT_ARM)
        df["propensity"] = pd.to_numeric(df["propensity"], errors="coerce")
        if not isinstance(df["scores"].dtype, pd.ArrowDtype):  # no rows: an empty column
            df["scores"] = scores_column(df["scores"].tolist(), kind)
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
        files = parts_of(root, kind)
        if not files and (kind != "shadow" or need_shadow):
            raise ReportError(
                f"{root}: no {kind} ({kind}.parquet, {kind}.jsonl or {kind}/ with such parts)"
            )
        frames[kind], dropped[kind] = to_frame(kind, read_parts(files, kind, progress))
    return EventLog(frames["decisions"], frames["outcomes"], frames["shadow"], dropped, str(root))


def attempts_table(log: EventLog) -> pd.DataFrame:
    """Decisions with their outcome (inner join on request_id)."""
    if not len(log.decisions):
        raise ReportError(f"{log.source}: no decisions")
    out = log.outcomes[["request_id", "approved", "amount_minor"]]
    return log.decisions.merge(out, on="request_id", how="inner", validate="one_to_one")

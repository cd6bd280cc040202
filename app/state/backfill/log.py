"""Reading an event log's outcomes for backfill, in log order.

The outcomes of an event-log directory (the format app.features.offline reads and app.sim /
app.harness.sample write): `outcomes.parquet`, or a folder `outcomes/` of `*.parquet` parts
read in file-name order. Log order is that order of parts, then rows in file order: the tie
order of the replay (app.state.backfill).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from app.state.backfill.vectorized import OPTIONAL, REQUIRED, BackfillError


def outcome_files(log_dir: Path) -> list[Path]:
    """The outcome files of a log directory, in log order."""
    single, folder = log_dir / "outcomes.parquet", log_dir / "outcomes"
    if single.is_file():
        return [single]
    parts = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not parts:
        raise BackfillError(f"{log_dir}: no outcomes.parquet and no outcomes/*.parquet")
    return parts


def check_contract(log_dir: Path) -> None:
    """CONTRACT CHECK CALL SITE (issue 14 item 6). The event-log validator (app.contracts,
    written in another session) has not landed on main yet; once it has, call it here and raise
    BackfillError with its report when it refuses the log. Until then compute() itself refuses
    what it cannot replay exactly (missing columns, nulls, wrong types) and nothing else: enum
    spellings, time order and outcomes without a request are not checked."""
    return None


def read_outcomes(log_dir: Path) -> pa.Table:
    """The columns compute() needs from every outcome of the log, in log order."""
    check_contract(log_dir)
    wanted = (*REQUIRED, *OPTIONAL)
    tables = []
    for f in outcome_files(log_dir):
        # ParquetFile, not pq.read_table: the dataset layer behind read_table measured ~1 s
        # on its first call in a process (100,000 outcomes: 0.06 s this way)
        pf = pq.ParquetFile(f)
        names = set(pf.schema_arrow.names)
        missing = [c for c in REQUIRED if c not in names]
        if missing:
            raise BackfillError(f"{f}: missing required column(s) {', '.join(missing)}")
        t = pf.read(columns=[c for c in wanted if c in names])
        for c in OPTIONAL:
            if c not in names:
                t = t.append_column(c, pa.nulls(t.num_rows, pa.string()))
        tables.append(t.select(list(wanted)))
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as e:
        raise BackfillError(f"{log_dir}: outcome parts do not share a schema: {e}") from e

"""Reading an event log's outcomes for backfill, in log order, after the contract check.

The outcomes of an event-log directory laid out as the ingest contract says
(app.contracts.ingest, which app.sim and app.harness.sample write): `outcomes.parquet`, or a
folder of `.parquet` parts read in path order. Log order is that order of parts, then rows in
file order: the tie order of the replay (app.state.backfill).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from app.contracts.ingest import read_layout, require_valid_log
from app.state.backfill.vectorized import OPTIONAL, REQUIRED, BackfillError


def outcome_files(log_dir: Path) -> list[Path]:
    """The outcome files of a log directory in log order, as the contract finds them
    (app.contracts.ingest.read_layout)."""
    tables, problems = read_layout(log_dir)
    if "outcomes" in tables:
        return tables["outcomes"].parts
    why = [p.detail for p in problems if p.table == "outcomes"] or ["no outcomes table"]
    raise BackfillError(f"{log_dir}: outcomes " + "; ".join(why))


def read_outcomes(log_dir: Path, check: bool = True) -> pa.Table:
    """The columns compute() needs from every outcome of the log, in log order.

    With `check` the log is first checked against the ingest contract
    (app.contracts.ingest.require_valid_log: types, enum spellings, nulls, duplicate ids,
    outcomes without a request, time order): a log that breaks it raises LogRejected with the
    report, and nothing is read. check=False is for logs checked already, or outcome tables
    without their requests (tests)."""
    if check:
        require_valid_log(log_dir)
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

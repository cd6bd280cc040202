"""The loader seam: write a computed BackfillState into a deployment before its workers start.

One function, so the table format (checkpointed values with an offset marker header, the owner
layout) is known in one place: `load` receives the three stores exactly as the worker's tables
hold their values today (card-features, feature-state, route-stats; see BackfillState) and
decides how they reach the workers (changelog records the workers recover from, or the RocksDB
tables written before start). The GlobalTables every worker reads are part of it: the
feature-state values are published as they are, the route-stats rings as
`app.state.windows.count.snapshot_bytes(value)` (app.worker.agents.owners). Whatever it does,
it must emit nothing a downstream consumer acts on (no RetryDecision, alert or decision:
issue 14 item 7).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.state.backfill.vectorized import BackfillState


@dataclass(frozen=True)
class LoadReport:
    """What `load` wrote, per worker table name."""

    records: dict[str, int]  # table name -> values written
    target: str  # where they went (changelog topics, a data dir)
    seconds: float


def load(state: BackfillState, settings: Settings) -> LoadReport:
    """Write `state` where the workers of `settings` recover it from."""
    raise NotImplementedError(
        "loading a backfilled state is not implemented yet: it waits for the new table format "
        "(checkpointed values with an offset marker header). Run with --dry-run to compute "
        "and check the state only."
    )

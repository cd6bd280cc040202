"""Backfill: the worker's final online state computed from an event log offline, vectorized.

A new deployment starts warm from history without replaying it through Kafka (230-340
outcomes/s through the outcomes topic, and every replayed decline emitted a RetryDecision).
`compute` turns the log's outcomes into the three tables the worker learns into, as
`dict[bytes, bytes]` byte-identical to replaying the outcomes one by one through
`FeatureState.update_outcome` (all four owners) and `update_success_rate` (`replay.replay`,
the reference). `load` is the one seam that writes them into a deployment.

Replay order (the order the result equals): the outcomes sorted by event_time, ties in the
log's order (parts in file-name order, rows in file order), after dropping repeated
request_ids (the first copy is kept). Why: event_time is when the gateway received the
response and published the outcome, so it is the order a live worker's state saw them; the
log's order is the order they were written for equal times. Only two parts of the state depend
on the order at all: the success-rate rings (the last B outcomes per key) and, among a card's
declines at one millisecond, which one is its last decline. The time rings do not: a slot ends
up holding its newest bucket with the sum of every outcome in that bucket, whatever the order.

As of: the state after every outcome with event_time <= as_of_ms (default: the newest outcome
of the log). The rings hold absolute bucket indices, so no clock is stored: a worker that
starts days later reads the same values and its windows have simply aged out (a window read
at time T counts only buckets in [T // width - buckets + 1, T // width]).

Modules: `log` reads the outcomes after the ingest contract's check (app.contracts.ingest),
`vectorized` computes the state, `replay` is the per-outcome reference, `load` the loader seam.
"""

from app.state.backfill.load import LoadReport, load
from app.state.backfill.log import read_outcomes
from app.state.backfill.vectorized import BackfillError, BackfillState, aged_out_windows, compute

__all__ = [
    "BackfillError",
    "BackfillState",
    "LoadReport",
    "aged_out_windows",
    "compute",
    "load",
    "read_outcomes",
]

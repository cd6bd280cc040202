"""Checkpoint: staged state written once per key, owner deltas sent, before every commit.

Runs every AUTHPILOT_STATE_CHECKPOINT_MS on a timer and, through `before_commit`, inside every
offset commit right before Faust flushes the producer and commits: so the effect of each event
whose offset is committed is in a changelog first (nothing lost), and the marks in each value
make a replay of uncommitted events change nothing (app.state.checkpoint).

A checkpoint is synchronous (send_soon into the producer buffer, RocksDB puts): no other
coroutine runs in the middle of one, so a commit never sees half of it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from faust.types import TP, AppT

from app.monitoring.metrics import CHECKPOINT_SECONDS, EVENTS_OUT, STATE_WRITES
from app.worker.context import WorkerContext


def register(app: AppT, ctx: WorkerContext) -> Callable[[], int]:
    s = ctx.settings
    st = ctx.state
    topic = ctx.topics.owner_updates
    stores = st.stores()
    writes = {name: STATE_WRITES.labels(name) for name in stores}
    deltas_out = EVENTS_OUT.labels(topic.get_topic_name())
    card_topic = s.topic_outcomes
    owner_topic = topic.get_topic_name()

    def checkpoint() -> int:
        """Hand every staged batch and value to the producer; returns values written."""
        t0 = time.perf_counter()
        for q, value in st.deltas.drain():
            topic.send_soon(key=None, value=value, partition=q)
            deltas_out.inc()
        total = 0
        for name, store in stores.items():
            n = store.checkpoint()
            if n:
                writes[name].inc(n)
                total += n
        CHECKPOINT_SECONDS.observe(time.perf_counter() - t0)
        return total

    @app.timer(s.state_checkpoint_ms / 1000.0)
    async def periodic_checkpoint() -> None:
        checkpoint()

    @app.on_partitions_assigned.connect
    async def hook_commits(*args: Any, **kwargs: Any) -> None:
        before_commit(app, checkpoint)

    @app.on_partitions_revoked.connect
    async def drop_revoked(*args: Any, **kwargs: Any) -> None:  # (app, revoked)
        # Faust committed (so checkpointed) before this signal; anything still staged for a
        # revoked partition would be written by a worker that no longer owns it.
        tps: set[TP] = args[1] if len(args) > 1 else kwargs.get("revoked", set())
        st.card.drop({tp.partition for tp in tps if tp.topic == card_topic})
        for store in (st.features, st.success_rates):
            store.drop({tp.partition for tp in tps if tp.topic == owner_topic})

    return checkpoint


def before_commit(app: AppT, checkpoint: Callable[[], Any]) -> None:
    """Run `checkpoint` at the start of every offset commit of this app's consumer.

    Faust commits in Consumer._commit_offsets: flush the producer, then commit. Wrapping that
    one method of this app's consumer instance (not the class: other apps in the process keep
    theirs) puts the checkpoint's messages in the producer before that flush."""
    consumer: Any = app.consumer
    if getattr(consumer, "_authpilot_checkpointed", False):
        return
    inner: Callable[..., Awaitable[bool]] = consumer._commit_offsets

    async def commit_offsets(offsets: Mapping[TP, int], *a: Any, **kw: Any) -> bool:
        checkpoint()
        return await inner(offsets, *a, **kw)

    consumer._commit_offsets = commit_offsets
    consumer._authpilot_checkpointed = True

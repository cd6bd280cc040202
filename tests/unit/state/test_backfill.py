"""Backfill (vectorized) equals the per-outcome replay through the worker's own code, byte for
byte, in the stated replay order: event_time, ties in log order, first copy of a request_id."""

from __future__ import annotations

import itertools
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.contracts.ingest import LogRejected
from app.evaluation.policies import SuccessRateRings
from app.features.definitions import ENTITIES, FEATURE_NAMES
from app.features.online import FeatureState, new_buffer
from app.harness.sample import write_sample_log
from app.sim import simulate
from app.state.backfill import (
    BackfillError,
    BackfillState,
    aged_out_windows,
    compute,
    read_outcomes,
)
from app.state.backfill.replay import replay, replay_order
from app.state.backfill.vectorized import REQUIRED
from app.state.windows.count import CountRing, snapshot_bytes, stat_keys

W = 125
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def rows_of(log: Path) -> list[dict[str, Any]]:
    return pq.ParquetFile(log / "outcomes.parquet").read().to_pylist()


def assert_same_state(got: BackfillState, want: BackfillState) -> None:
    for name, a, b in zip(got.stores(), got.stores().values(), want.stores().values(),
                          strict=True):  # fmt: skip
        assert a.keys() == b.keys(), (
            f"{name}: {len(a.keys() - b.keys())} extra keys, {len(b.keys() - a.keys())} missing"
        )
        bad = [k for k in b if a[k] != b[k]]
        assert not bad, f"{name}: {len(bad)} of {len(b)} values differ, first {bad[:3]}"
    assert got.outcomes == want.outcomes


_BOTH: dict[tuple[Path, int | None], tuple[BackfillState, BackfillState]] = {}


def both(log: Path, as_of: int | None = None) -> tuple[BackfillState, BackfillState]:
    """(backfill, reference replay) of a log directory (computed once per module)."""
    if (log, as_of) not in _BOTH:
        _BOTH[(log, as_of)] = (
            compute(read_outcomes(log), W, as_of),
            replay(replay_order(rows_of(log), as_of), W),
        )
    return _BOTH[(log, as_of)]


def feature_state(s: BackfillState) -> FeatureState:
    return FeatureState({"card": s.card, "route": s.features, "bin": s.features,
                         "merchant": s.features})  # fmt: skip


def with_times(src: Path, dst: Path, f: Any) -> Path:
    """A copy of a log with every time t (requests' event_time, outcomes' event_time and
    request_time) replaced by f(t); a monotonic f keeps it within the ingest contract."""
    dst.mkdir(parents=True)
    for name, cols in (("requests", ("event_time",)),
                       ("outcomes", ("event_time", "request_time"))):  # fmt: skip
        t = pq.read_table(src / f"{name}.parquet")
        for c in cols:
            i = t.schema.get_field_index(c)
            t = t.set_column(i, c, pa.array(f(t[c].to_numpy()), pa.int64()))
        pq.write_table(t, dst / f"{name}.parquet")
    return dst


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("logs")
    sample = write_sample_log(root / "sample")
    out = {
        "sample": sample,
        # every outcome at the start of its hour: most times are shared, by many keys
        "sample-hour-ties": with_times(sample, root / "ties", lambda t: t // HOUR_MS * HOUR_MS),
    }
    for name, scenario, days, seed in (("steady-6d", "steady", 6, 5),
                                       ("outage-11d", "acquirer_outage", 11, 2)):  # fmt: skip
        simulate(scenario, 15_000, seed, root / name, config={"days": days}, oracle=False)
        out[name] = root / name
    return out


@pytest.mark.parametrize("name", ["sample", "sample-hour-ties", "steady-6d", "outage-11d"])
def test_backfill_equals_the_per_outcome_replay(logs, name):
    got, want = both(logs[name])
    assert_same_state(got, want)
    assert got.as_of_ms == want.as_of_ms == max(r["event_time"] for r in rows_of(logs[name]))
    # the log really exercises every store and the stores hold what the worker's tables do
    assert len(got.card) > 1000 and len(got.features) > 30 and len(got.route_stats) > 20
    assert any(k.startswith(b"card_last|") for k in got.card)
    assert not any(k.startswith((b"bin|", b"route|", b"merchant|")) for k in got.card)
    assert got.keys_per_entity == {
        **{e.name: sum(k.startswith(f"{e.name}|".encode()) for k in {**got.card, **got.features})
           for e in ENTITIES},
        "card_last": sum(k.startswith(b"card_last|") for k in got.card),
    }  # fmt: skip


def test_the_simulated_logs_span_more_than_the_windows_and_are_out_of_time_order(logs):
    """What makes the two simulated logs worth checking: buckets are reused many times over
    (6 and 11 days against 1 h, 24 h and 7 d rings) and rows come in request order, so in
    log order some outcomes arrive after newer ones (what a stable sort must put right)."""
    for name, days in (("steady-6d", 5), ("outage-11d", 10)):
        t = np.array([r["event_time"] for r in rows_of(logs[name])])
        assert t.max() - t.min() > days * DAY_MS
        assert (np.diff(t) < 0).sum() > 10


def test_event_time_ties_are_replayed_in_log_order(logs):
    """With ties, the success-rate rings depend on their order: replaying ties in reversed log
    order gives other rings, the log's order gives the backfill's."""
    rows = rows_of(logs["sample-hour-ties"])
    times = [r["event_time"] for r in rows]
    assert len(set(times)) < len(times) / 5, "mostly ties"
    got = compute(read_outcomes(logs["sample-hour-ties"]), W)
    reversed_ties = sorted(range(len(rows)), key=lambda i: (times[i], -i))
    other = replay([rows[i] for i in reversed_ties], W)
    assert other.route_stats != got.route_stats
    assert other.features == got.features, "time rings do not depend on the order"


def test_time_rings_depend_on_no_order_success_rate_rings_do(logs):
    """Time rings keep each slot's newest bucket whatever the order (an outcome older than a
    ring's slot is dropped); replaying the log in its own order (request time) or shuffled
    gives the same feature stores, and other success-rate rings."""
    log = logs["sample"]  # 12 days, rows in request order
    got, _ = both(log)
    rows = rows_of(log)
    assert sum(b["event_time"] < a["event_time"] for a, b in itertools.pairwise(rows)) > 10
    shuffled = list(rows)
    random.Random(4).shuffle(shuffled)
    for order in (rows, shuffled):
        other = replay(order, W)
        assert other.card == got.card
        assert other.features == got.features
    assert replay(shuffled, W).route_stats != got.route_stats


@pytest.mark.parametrize("name", ["sample", "steady-6d"])
def test_feature_rows_of_requests_at_the_end_of_the_log_are_identical(logs, name):
    log = logs[name]
    got, want = both(log)
    assert got.as_of_ms is not None
    reqs = pq.ParquetFile(log / "requests.parquet").read().to_pylist()
    sample = reqs[-100:] + random.Random(1).sample(reqs, 300)
    a, b = feature_state(got), feature_state(want)
    buf_a, buf_b = new_buffer(), new_buffer()
    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    window_of = {f"{e.name}_{w}_{m}": w for e in ENTITIES for w, m in e.counts}
    window_of |= {f"{e.name}_{w}_{m}_rate": w for e in ENTITIES for w, m in e.rates}
    seen_1h = False
    for later_ms in (1, 30 * 60_000, 2 * DAY_MS, 40 * DAY_MS):
        at = got.as_of_ms + later_ms
        rows_a, rows_b = [], []
        for r in sample:
            req = dict(r, event_time=at)
            rows_a.append(a.fill(req, buf_a).copy())
            rows_b.append(b.fill(req, buf_b).copy())
        xa, xb = np.concatenate(rows_a), np.concatenate(rows_b)
        assert np.array_equal(xa, xb, equal_nan=True), f"rows differ at as_of + {later_ms} ms"
        # a worker starting later reads the same values; its windows have aged out
        gone = set(aged_out_windows(got.as_of_ms, at))
        for feat, w in window_of.items():
            v = xa[:, col[feat]]
            if w in gone:
                assert np.all((v == 0) | np.isnan(v)), f"{feat} at +{later_ms} ms"
        if later_ms == 1:
            assert gone == set()
            assert (xa[:, col["bin_route_7d_n"]] > 0).mean() > 0.9
            assert (xa[:, col["card_24h_n"]] > 0).any()
            seen_1h = bool((xa[:, col["route_1h_n"]] > 0).any())
        if later_ms == 2 * DAY_MS:
            assert gone == {"1h", "24h"}
            assert (xa[:, col["bin_route_7d_n"]] > 0).any()
    assert seen_1h


def test_success_rate_snapshots_are_identical(logs):
    got, want = both(logs["outage-11d"])
    ring = CountRing(W, 20)
    assert got.route_stats.keys() == want.route_stats.keys()
    for k, v in want.route_stats.items():
        assert snapshot_bytes(got.route_stats[k]) == snapshot_bytes(v)
        assert ring.read_one(got.route_stats[k]) == ring.read_one(v)
        assert ring.young(got.route_stats[k]) == ring.young(v)
    # as the router reads them, for every level of every candidate of sampled requests
    a, b = SuccessRateRings(W, got.route_stats), SuccessRateRings(W, want.route_stats)
    reqs = pq.ParquetFile(logs["outage-11d"] / "requests.parquet").read().to_pylist()[-500:]
    looked = 0
    for r in reqs:
        for c in r["candidates"]:
            for key in stat_keys(c["route_id"], r["bin"], r["network"], r["issuer_country"]):
                assert a.lookup(key) == b.lookup(key)
                looked += a.lookup(key) is not None
    assert looked > 1000
    # route failures of the outage are in the windows
    assert any(ring.read_one(v).route_failures > 0 for v in got.route_stats.values())


def test_a_router_warmed_by_backfill_decides_like_one_warmed_by_replay(logs):
    """The worker's Dispatcher (success-rate routing, as the evaluator runs it) over the
    backfilled state decides every sampled request as over the evaluator's own warm-up (every
    outcome observed in event-time order), and unlike a cold one. Route latency (an in-memory
    EWMA in the worker, not in its tables, so not backfilled) is copied over."""
    from app.config import Settings
    from app.evaluation.policies import DispatchRouter, LearnedState

    log = logs["steady-6d"]
    got, _ = both(log)
    assert got.as_of_ms is not None
    warm = LearnedState(W)
    for o in replay_order(rows_of(log)):
        warm.observe(o)
    stores = {"card": got.card, "route": got.features, "bin": got.features,
              "merchant": got.features}  # fmt: skip
    backfilled = LearnedState(W, stores, got.route_stats, warm.latency.mean)
    cold = LearnedState(W, latency=warm.latency.mean)
    s = Settings()
    routers = [DispatchRouter("success_rate", s, st) for st in (warm, backfilled, cold)]
    reqs = pq.ParquetFile(log / "requests.parquet").read().to_pylist()
    differs = 0
    for r in random.Random(2).sample(reqs, 400):
        req = dict(r, event_time=got.as_of_ms + 1)
        a, b, c = (router.decide(req) for router in routers)
        assert a == b
        differs += a["scores"] != c["scores"]
    assert differs > 300


def test_as_of_is_the_state_after_the_outcomes_up_to_that_time(logs):
    log = logs["steady-6d"]
    t = sorted(r["event_time"] for r in rows_of(log))
    as_of = t[len(t) // 2]
    got, want = both(log, as_of)
    assert_same_state(got, want)
    assert got.as_of_ms == as_of
    assert got.outcomes == sum(x <= as_of for x in t)
    assert got.after_as_of == len(t) - got.outcomes > 0


def test_repeated_request_ids_are_dropped_keeping_the_first(tmp_path, logs):
    """compute() counts a repeated request_id once (Kafka delivers at least once); through
    read_outcomes the ingest contract refuses such a log before that."""
    rows = rows_of(logs["sample"])
    again = [dict(r) for r in rows[:200]]
    pq.write_table(pa.Table.from_pylist(rows + again), tmp_path / "outcomes.parquet")
    got = compute(read_outcomes(tmp_path, check=False), W)
    assert got.duplicates == 200
    assert_same_state(got, both(logs["sample"])[0])
    assert_same_state(got, replay(replay_order(rows + again), W))
    shutil.copy(logs["sample"] / "requests.parquet", tmp_path / "requests.parquet")
    with pytest.raises(LogRejected, match="appears more than once"):
        read_outcomes(tmp_path)


def test_the_ingest_contract_is_checked_before_anything_is_read(tmp_path, logs):
    """A log spelling VISA `visa` would build keys no worker ever reads (`...|cc:visa:DE`);
    read_outcomes refuses it with the contract's report."""
    shutil.copy(logs["sample"] / "requests.parquet", tmp_path / "requests.parquet")
    t = pq.read_table(logs["sample"] / "outcomes.parquet")
    i = t.schema.get_field_index("network")
    t = t.set_column(i, "network", pc.utf8_lower(t["network"]))
    pq.write_table(t, tmp_path / "outcomes.parquet")
    with pytest.raises(LogRejected) as e:
        read_outcomes(tmp_path)
    assert "outcomes.network" in str(e.value) and "visa" in str(e.value)
    assert compute(read_outcomes(tmp_path, check=False), W).outcomes == t.num_rows


def test_an_absent_initiator_column_is_cit(tmp_path, logs):
    """initiator has a schema default (CIT) in outcomes, so a log may leave it out there (the
    contract then holds every request CIT); the state is that of an explicit CIT column."""
    req = pq.read_table(logs["sample"] / "requests.parquet")
    out = pq.read_table(logs["sample"] / "outcomes.parquet")
    cit = pa.array(["CIT"] * req.num_rows)
    req = req.set_column(req.schema.get_field_index("initiator"), "initiator", cit)
    out = out.set_column(out.schema.get_field_index("initiator"), "initiator", cit)
    (tmp_path / "with").mkdir()
    (tmp_path / "without").mkdir()
    for d, o in (("with", out), ("without", out.drop_columns(["initiator"]))):
        pq.write_table(req, tmp_path / d / "requests.parquet")
        pq.write_table(o, tmp_path / d / "outcomes.parquet")
    got = compute(read_outcomes(tmp_path / "without"), W)
    assert_same_state(got, compute(read_outcomes(tmp_path / "with"), W))
    rows = out.drop_columns(["initiator"]).to_pylist()
    assert_same_state(got, replay(replay_order(rows), W))


def test_a_folder_of_parts_is_read_in_path_order(tmp_path, logs):
    """Parts are concatenated in path order (the log order ties keep), as the contract lays a
    table out."""
    src = logs["sample-hour-ties"]
    rows = rows_of(src)
    shutil.copy(src / "requests.parquet", tmp_path / "requests.parquet")
    parts = tmp_path / "outcomes"
    parts.mkdir()
    written = []
    for i in range(3):  # row j in part j % 3: ties of one hour spread over every part
        # written out of path order: the reader sorts by path, not by creation
        pq.write_table(pa.Table.from_pylist(rows[i::3]), parts / f"part-{2 - i}.parquet")
        written += rows[i::3]
    names = sorted(p.name for p in parts.iterdir())
    ordered = [r for n in names for r in pq.read_table(parts / n).to_pylist()]
    got = compute(read_outcomes(tmp_path), W)
    assert_same_state(got, replay(replay_order(ordered), W))
    assert got.route_stats != replay(replay_order(written), W).route_stats


def test_an_empty_log_is_an_empty_state(tmp_path, logs):
    t = pq.read_table(logs["sample"] / "outcomes.parquet").slice(0, 0)
    pq.write_table(t, tmp_path / "outcomes.parquet")
    got = compute(read_outcomes(tmp_path, check=False), W)
    assert (got.card, got.features, got.route_stats, got.outcomes, got.as_of_ms) == (
        {}, {}, {}, 0, None)  # fmt: skip


def test_what_cannot_be_replayed_exactly_is_refused(tmp_path, logs):
    t = pq.read_table(logs["sample"] / "outcomes.parquet")
    with pytest.raises(LogRejected, match="not found"):
        read_outcomes(tmp_path)
    with pytest.raises(BackfillError, match="outcomes not found"):
        read_outcomes(tmp_path, check=False)
    with pytest.raises(BackfillError, match="route_id"):
        compute(t.drop_columns(["route_id"]), W)
    cards = t["card_fingerprint"].to_pylist()
    cards[5] = None
    i = t.schema.get_field_index("card_fingerprint")
    with pytest.raises(BackfillError, match="'card_fingerprint' has 1 null"):
        compute(t.set_column(i, "card_fingerprint", pa.array(cards)), W)
    i = t.schema.get_field_index("event_time")
    as_float = pa.array(t["event_time"].to_numpy().astype(float))
    with pytest.raises(BackfillError, match="'event_time' is double"):
        compute(t.set_column(i, "event_time", as_float), W)
    with pytest.raises(BackfillError, match="sr_window"):
        compute(t, 0)
    assert set(REQUIRED) >= {"request_id", "event_time", "route_id", "approved"}


def test_load_writes_what_the_workers_checkpoints_would(logs):
    """Every record the loader writes: card groups on the gateway's partition of the card,
    owned keys on their owner partition, marks in every table value, GlobalTable copies."""
    from app.config import Settings
    from app.kafka.partitioning import partition_of
    from app.state.backfill.load import owner_key, records
    from app.state.checkpoint import card_group, decode, unpack_group
    from app.state.deltas import owner_partition
    from app.state.windows.count import snapshot_bytes

    s = Settings(partitions=3)
    state = compute(read_outcomes(logs["sample"]), W)
    marks = [5, -1, 9]
    out: dict[str, dict[bytes, tuple[int, bytes]]] = {}
    for table, p, k, v in records(state, s, marks):
        assert k not in out.setdefault(table, {})
        out[table][k] = (p, v)
    place = partition_of(s.gateway_partitioner)
    cards: dict[bytes, bytes] = {}
    for g, (p, v) in out["card-features"].items():
        m, payload = decode(v, 3)
        assert m == marks and p == place(g.removeprefix(b"card:"), 3)
        cards.update(unpack_group(payload))
    assert cards == state.card and all(card_group(k) in out["card-features"] for k in cards)
    for k, v in state.features.items():
        p, stored = out["feature-state"][k]
        assert p == owner_partition(owner_key(k), 3) and decode(stored, 3) == (marks, v)
        assert out["feature-snapshots"][k] == (p, v)
    for k, v in state.route_stats.items():
        p, stored = out["route-stats"][k]
        assert p == owner_partition(k.decode().split("|", 1)[0], 3)
        assert decode(stored, 3) == (marks, v)
        assert out["route-sr"][k] == (p, snapshot_bytes(v))
    assert {owner_key(k) for k in state.features} >= {"acq-eu"}


def test_aged_out_windows():
    t = 1_767_225_600_000  # a midnight: bucket edges of every window
    assert aged_out_windows(t, t) == []
    assert aged_out_windows(t, t + HOUR_MS - 1) == []  # 12 five-minute buckets: 55-60 min
    assert aged_out_windows(t, t + HOUR_MS) == ["1h"]
    assert aged_out_windows(t, t + 24 * HOUR_MS) == ["1h", "24h"]
    assert aged_out_windows(t, t + 7 * DAY_MS) == ["1h", "24h", "7d"]
    assert aged_out_windows(t, t + 30 * DAY_MS) == ["1h", "24h", "7d", "30d"]


# ---------------------------------------------------------------- property: random small logs

T0 = 1_767_225_600_000
TIMES = st.one_of(
    # bucket edges and ties
    st.sampled_from([T0, T0 + 1, T0 + 299_999, T0 + 300_000, T0 + HOUR_MS, T0 + DAY_MS]),
    # up to 45 days either way: outcomes older than every ring (30 d) of a newer one
    st.integers(T0 - 45 * DAY_MS, T0 + 45 * DAY_MS),
    # around the epoch: buckets -1 and below meet the empty slot's index -1
    st.integers(-2 * DAY_MS, 2 * DAY_MS),
)


@st.composite
def outcome_logs(draw: st.DrawFn) -> tuple[list[dict[str, Any]], pa.Schema]:
    """Rows in log order over a handful of keys, with fields holding the key separators (two
    combinations that print one key are one key, in the reference's dict as in the backfill),
    integer BINs, duplicate request ids, missing initiators."""
    int_bins = draw(st.booleans())
    bins = [411111, 545454] if int_bins else ["411111", "4|all"]
    n = draw(st.integers(0, 40))
    rows = []
    for _ in range(n):
        rows.append({
            "request_id": f"q{draw(st.integers(0, max(n, 1)))}",
            "event_time": draw(TIMES),
            "attempt": draw(st.integers(1, 3)),
            "card_fingerprint": draw(st.sampled_from(["c", "c|1", "d"])),
            "bin": draw(st.sampled_from(bins)),
            "network": draw(st.sampled_from(["VISA", "MASTERCARD"])),
            "issuer_country": draw(st.sampled_from(["DE", "US"])),
            "merchant_id": draw(st.sampled_from(["m1", "1|m1"])),
            "amount_minor": draw(st.sampled_from([100, 250, -5])),
            "route_id": draw(st.sampled_from(["r", "r2", "r|bin:4"])),
            "approved": draw(st.booleans()),
            "response_code": draw(st.sampled_from(["00", "05", "51", "14", "91", "N7"])),
            "failure_side": draw(st.sampled_from(["NONE", "ROUTE", "ISSUER"])),
            "initiator": draw(st.sampled_from(["CIT", "MIT", None])),
        })  # fmt: skip
    schema = pa.schema([
        ("request_id", pa.string()), ("event_time", pa.int64()), ("attempt", pa.int32()),
        ("card_fingerprint", pa.string()), ("bin", pa.int64() if int_bins else pa.string()),
        ("network", pa.string()), ("issuer_country", pa.string()), ("merchant_id", pa.string()),
        ("amount_minor", pa.int64()), ("route_id", pa.string()), ("approved", pa.bool_()),
        ("response_code", pa.string()), ("failure_side", pa.string()),
        ("initiator", pa.string()),
    ])  # fmt: skip
    return rows, schema


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outcome_logs(), st.integers(1, 5), st.one_of(st.none(), TIMES))
def test_backfill_equals_replay_on_random_logs(log, window, as_of):
    rows, schema = log
    got = compute(pa.Table.from_pylist(rows, schema=schema), window, as_of)
    want = replay(replay_order(rows, as_of), window)
    assert_same_state(got, want)
    if as_of is None:
        assert got.as_of_ms == want.as_of_ms

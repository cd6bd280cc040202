"""The compiled ring kernel equals the numpy reference bit for bit, and builds or says why not.

Property tests over random geometries, event times (out of order, far apart, at the int64
edges), increments (wrapping int64 sums) and row plans: every update's bytes, every read's
sums and every filled row's bits (NaN positions included) are the reference's.
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.state.windows import kernel
from app.state.windows import reference as ref
from app.state.windows.time import (
    Increment,
    Key,
    Readout,
    RingUpdates,
    RowPlan,
    TimeRing,
    geometry,
)

I64 = st.integers(-(2**63), 2**63 - 1)
T0 = 1_767_225_600_000
DAY_MS = 86_400_000


@st.composite
def geometries(draw: st.DrawFn, max_windows: int = 4) -> tuple[list[tuple[int, int]], int]:
    windows = draw(st.lists(st.tuples(st.sampled_from([1, 7, 1000, 300_000, 3_600_000, DAY_MS])
                                      | st.integers(1, 10**9), st.integers(1, 40)),
                            min_size=1, max_size=max_windows))  # fmt: skip
    return windows, draw(st.integers(1, 9))


def times(around: int = T0) -> st.SearchStrategy[int]:
    """Mostly near one another (buckets shared, reused, out of order), some far apart or at
    the int64 edges."""
    near = st.integers(-40 * DAY_MS, 40 * DAY_MS).map(
        lambda d: min(max(around + d, -(2**63)), 2**63 - 1)
    )
    return st.one_of(near, near, near, st.integers(-(2**50), 2**50), I64)


def increments(metrics: int) -> st.SearchStrategy[np.ndarray]:
    small = st.integers(-3, 1000)
    return st.lists(st.one_of(small, small, small, I64), min_size=metrics,
                    max_size=metrics).map(lambda xs: np.array(xs, dtype=np.int64))  # fmt: skip


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[tuple[int, int]], int, list[Increment], list[int]]:
    windows, metrics = draw(geometries())
    events = draw(st.lists(st.builds(Increment, times(), increments(metrics)), max_size=60))
    reads = draw(st.lists(times(), min_size=1, max_size=8))
    reads += [e.t_ms for e in events[-3:]]
    return windows, metrics, events, reads


@settings(max_examples=300, deadline=None)
@given(streams())
def test_update_and_read_are_the_references_bit_for_bit(stream):
    windows, metrics, events, reads = stream
    g = geometry(windows, metrics)
    fast, slow = TimeRing(g), ref.TimeRing(g)
    assert fast.empty() == slow.empty()
    v: bytes | None = None
    for i, e in enumerate(events):
        want = slow.update_one(v, e)
        assert fast.update_one(v, e) == want
        # the kernel takes a list of ints too, and starts an empty value like a missing one
        assert fast.update_one(v, Increment(e.t_ms, e.incr.tolist())) == want
        if v is None:
            assert fast.update_one(fast.empty(), e) == want
        v = want
        if i % 7 == 0 or i == len(events) - 1:
            for at in reads:
                assert np.array_equal(fast.read_one(v, at), slow.read_one(v, at))
    for at in reads:
        assert np.array_equal(fast.read_one(None, at), slow.read_one(None, at))


def test_far_apart_and_stale_events_on_a_fixed_geometry():
    """A deterministic stream with the cases the properties sample: a bucket reused after the
    ring wrapped, an event older than the ring (dropped), one far in the future, negative
    times, wrapping sums."""
    g = geometry([(3_600_000, 24), (DAY_MS, 7), (DAY_MS, 30)], 3)
    fast, slow = TimeRing(g), ref.TimeRing(g)
    big = 2**63 - 5
    events = [(T0, [1, 2, big]), (T0 + 1, [1, 0, big]), (T0 + 25 * 3_600_000, [1, 1, 1]),
              (T0 - 60 * DAY_MS, [1, 1, 1]), (T0 + 10**12, [2, 2, 2]), (-5, [1, 1, 1]),
              (-(2**63), [1, 1, 1]), (T0, [7, 7, 7])]  # fmt: skip
    v = None
    for t, incr in events:
        e = Increment(t, np.array(incr, dtype=np.int64))
        want = slow.update_one(v, e)
        assert fast.update_one(v, e) == want
        v = want
        for at in (T0, T0 + 10**12, -1, 2**62, -(2**62)):
            assert fast.read_one(v, at).tolist() == slow.read_one(v, at).tolist()


# --- row plans -------------------------------------------------------------------------------

FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(-0.0),
                   st.integers(-5, 5).map(float))  # fmt: skip


@st.composite
def plans(draw: st.DrawFn):
    """A random row: shared and per-row floats and readouts in random column order, readouts of
    random geometries exporting random (window, metric) counts and rates."""
    items: list[tuple[str, int]] = []
    items += [("shared_col", 1)] * draw(st.integers(0, 4))
    items += [("row_col", 1)] * draw(st.integers(0, 3))
    specs = []
    for kind in draw(st.lists(st.sampled_from(["shared", "per_row"]), min_size=1, max_size=5)):
        windows, metrics = draw(geometries(max_windows=3))
        pair = st.tuples(st.integers(0, len(windows) - 1), st.integers(0, metrics - 1))
        counts = tuple(draw(st.lists(pair, max_size=4)))
        rates = tuple(draw(st.lists(pair, max_size=4)))
        specs.append((kind, windows, metrics, counts, rates))
        items.append((kind, len(specs) - 1))
    order = draw(st.permutations(items))
    col = 0
    shared_cols, row_cols, shared, per_row = [], [], [], []
    for kind, i in order:
        if kind == "shared_col":
            shared_cols.append(col)
            col += 1
        elif kind == "row_col":
            row_cols.append(col)
            col += 1
        else:
            _, windows, metrics, counts, rates = specs[i]
            r = Readout(TimeRing(geometry(windows, metrics)), col, counts, rates)
            (shared if kind == "shared" else per_row).append(r)
            col += r.width
    return RowPlan(col, shared_cols, row_cols, shared, per_row)


def ring_value(draw: st.DrawFn, r: Readout, at: int) -> bytes | None:
    """None, or a value built by random updates around `at` (big increments: rates through
    the exact-division path; zero counts: NaN rates)."""
    event = st.builds(Increment, times(at), increments(r.ring.g.metrics))
    events = draw(st.none() | st.lists(event, max_size=12))
    if events is None:
        return None
    slow = ref.TimeRing(r.ring.g)
    v = slow.empty()
    for e in events:
        v = slow.update_one(v, e)
    return v


@settings(max_examples=150, deadline=None)
@given(plans(), st.data())
def test_fill_is_the_references_bit_for_bit(plan, data):
    at = data.draw(times())
    k = data.draw(st.integers(0, 4))
    values = [ring_value(data.draw, r, at) for r in plan.shared]
    for _ in range(k):
        values += [ring_value(data.draw, r, at) for r in plan.per_row]
    shared = data.draw(st.lists(FLOATS, min_size=len(plan.shared_cols),
                                max_size=len(plan.shared_cols)))  # fmt: skip
    per_row = data.draw(st.lists(FLOATS, min_size=k * len(plan.row_cols),
                                 max_size=k * len(plan.row_cols)))  # fmt: skip
    rows = k + data.draw(st.integers(0, 2))
    got = np.full((rows, plan.columns), 1.5)  # different garbage: an unwritten cell shows
    want = np.full((rows, plan.columns), -2.5)
    plan.fill(values, at, got, k, shared, per_row)
    ref.fill_rows(plan, values, at, want, k, shared, per_row)
    assert got[:k].tobytes() == want[:k].tobytes()  # bits: NaN payloads and -0.0 included
    assert (got[k:] == 1.5).all()  # rows past k untouched


def test_rates_of_sums_beyond_2_53_are_rounded_like_python():
    """x / n for int64 sums too large to be exact doubles: Python's correctly rounded int
    division, not the division of two rounded doubles."""
    g = geometry([(1000, 1)], 2)
    plan = RowPlan(1, [], [], [Readout(TimeRing(g), 0, (), ((0, 1),))], [])
    cases = [(2**53 + 1, 3), (2**62 + 7, 2**61 - 1), (-(2**63), 2**53 + 3), (10, 2**60 + 1)]
    for x, n in cases:
        value = ref.TimeRing(g).update_one(None, Increment(500, np.array([n, x], np.int64)))
        out = np.empty((1, 1))
        plan.fill([value], 500, out, 1, [], [])
        assert out[0, 0] == x / n
    # a case where rounding both operands first gives another double
    x, n = 2**53 + 1, 3
    assert float(x) / float(n) != x / n


# --- keyed reads and updates: the kernel makes the keys and does the store traffic --------

FIELD_VALUES = st.one_of(
    st.sampled_from(["a", "b|c", "é", "", "漢"]), st.integers(-(10**20), 10**20)
)
RECORDS = st.fixed_dictionaries({f: FIELD_VALUES for f in ("x", "y", "z")})
FIELDS = st.lists(st.sampled_from(["x", "y", "z", None]), max_size=4).map(tuple)
ROUTE_IDS = st.sampled_from(["r1", "r|2", "rø"])


def distinct_keys(fields: list[tuple[str | None, ...]]) -> list[Key]:
    """One key per ring, never two rings under one key (entities have distinct names)."""
    return [Key(f"e{i}|ü|", f) for i, f in enumerate(fields)]


class CountingStore(dict):
    """A dict store that records its traffic (the order the reference does it in)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, bytes]] = []

    def get(self, key, default=None):
        self.log.append(("get", key))
        return super().get(key, default)

    def __setitem__(self, key, value):
        self.log.append(("set", key))
        super().__setitem__(key, value)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(FIELDS, geometries(max_windows=2)), min_size=1, max_size=4), st.data())
def test_keyed_updates_are_the_references(rings, data):
    metrics = rings[0][1][1]
    keys = distinct_keys([f for f, _ in rings])
    updates = RingUpdates([(TimeRing(geometry(w, metrics)), key)
                           for key, (_, (w, _)) in zip(keys, rings, strict=True)])  # fmt: skip
    routed = any(None in k.fields for k in keys)
    fast, slow = CountingStore(), CountingStore()
    for _ in range(data.draw(st.integers(1, 6))):
        rec = data.draw(RECORDS)
        route = data.draw(ROUTE_IDS if routed else st.none() | ROUTE_IDS)
        t = data.draw(times())
        incr = data.draw(increments(metrics)).tolist()
        ref.apply_updates(updates, slow.get, slow, rec, route, t, incr)
        updates.apply(fast.get, fast, rec, route, t, incr)
        assert fast == slow and fast.log == slow.log  # same bytes, same traffic in order


@settings(max_examples=150, deadline=None)
@given(plans(), st.data())
def test_keyed_fill_is_the_references(plan, data):
    at = data.draw(times())
    routes = data.draw(st.lists(ROUTE_IDS, max_size=3))
    k = len(routes)
    rec = data.draw(RECORDS)
    n = len(plan.shared)
    fields = [data.draw(FIELDS) for _ in (*plan.shared, *plan.per_row)]
    # shared readouts are read without a route: their keys hold none
    keys = distinct_keys([f if i >= n else tuple(x for x in f if x) for i, f in enumerate(fields)])
    readouts = [Readout(r.ring, r.col, r.counts, r.rates, key)
                for r, key in zip((*plan.shared, *plan.per_row), keys, strict=True)]  # fmt: skip
    keyed = RowPlan(plan.columns, plan.shared_cols, plan.row_cols, readouts[:n], readouts[n:])
    store: dict[bytes, bytes] = {}
    for r, key in zip((*keyed.shared, *keyed.per_row), keys, strict=True):
        for route in routes or [None]:
            if data.draw(st.booleans()) and (route is not None or None not in key.fields):
                v = ring_value(data.draw, r, at)
                if v is not None:
                    store[key.of(rec, route)] = v
    getters = [store.get] * len(keys)
    shared = [0.5] * len(plan.shared_cols)
    per_row = [0.25] * (k * len(plan.row_cols))
    got = np.full((k, plan.columns), 1.5)
    want = np.full((k, plan.columns), -2.5)
    keyed.fill_keyed(getters, rec, routes, at, got, shared, per_row)
    ref.fill_rows_keyed(keyed, getters, rec, routes, at, want, shared, per_row)
    assert got.tobytes() == want.tobytes()


def test_keys_are_made_like_python_makes_them():
    """Key.of and the kernel's keys: str() of each field, '|' between, UTF-8; the route in
    its place; the errors Python raises for a missing field or a str that cannot encode."""
    ring = TimeRing(geometry([(1000, 2)], 1))
    key = Key("e|", ("x", None, "y"))
    rec = {"x": 12, "y": "é|z"}
    store: dict[bytes, bytes] = {}
    RingUpdates([(ring, key)]).apply(store.get, store, rec, "r1", 0, [1])
    assert list(store) == [b"e|12|r1|\xc3\xa9|z"] == [key.of(rec, "r1")]
    updates = RingUpdates([(ring, key)])
    with pytest.raises(KeyError):
        updates.apply(store.get, store, {"x": 1}, "r1", 0, [1])
    with pytest.raises(ValueError, match="pass the route"):
        updates.apply(store.get, store, rec, None, 0, [1])
    with pytest.raises(TypeError):
        updates.apply(store.get, store, rec, 7, 0, [1])
    with pytest.raises(UnicodeEncodeError):
        updates.apply(store.get, store, {"x": "\ud800", "y": 1}, "r1", 0, [1])
    with pytest.raises(UnicodeEncodeError):
        key.of({"x": "\ud800", "y": 1}, "r1")

    def broken(k: bytes) -> bytes | None:
        raise RuntimeError("store down")

    with pytest.raises(RuntimeError, match="store down"):
        updates.apply(broken, store, rec, "r1", 0, [1])
    plan = RowPlan(1, [], [], [], [Readout(ring, 0, ((0, 0),), (), key)])
    with pytest.raises(RuntimeError, match="store down"):
        plan.fill_keyed([broken], rec, ["r1"], 0, np.empty((1, 1)), [], [])
    unkeyed = RowPlan(1, [], [], [Readout(ring, 0, ((0, 0),))], [])
    with pytest.raises(ValueError, match="no key"):
        unkeyed.fill_keyed([store.get], rec, [], 0, np.empty((1, 1)), [], [])


# --- refusals --------------------------------------------------------------------------------


def test_values_and_buffers_of_the_wrong_shape_are_refused():
    g = geometry([(1000, 4)], 2)
    ring = TimeRing(g)
    with pytest.raises(ValueError, match="bytes"):
        ring.update_one(b"\0" * 8, Increment(0, [1, 1]))
    with pytest.raises(ValueError, match="one int per metric"):
        ring.update_one(None, Increment(0, [1, 1, 1]))
    with pytest.raises(TypeError):
        ring.update_one(None, Increment(0, np.array([1, 1], dtype=np.uint64)))
    plan = RowPlan(2, [0], [], [Readout(ring, 1, ((0, 0),))], [])
    v = ring.update_one(None, Increment(0, [1, 1]))
    with pytest.raises(ValueError, match="C-contiguous float64"):
        plan.fill([v], 0, np.empty((1, 2), dtype=np.float32), 1, [0.0], [])
    with pytest.raises(ValueError, match="C-contiguous float64"):
        plan.fill([v], 0, np.empty((1, 3)), 1, [0.0], [])
    with pytest.raises(IndexError):
        plan.fill([v], 0, np.empty((1, 2)), 2, [0.0], [])
    with pytest.raises(ValueError, match="values holds"):
        plan.fill([v, v], 0, np.empty((1, 2)), 1, [0.0], [])
    with pytest.raises(ValueError, match="bytes"):
        plan.fill([b"\0"], 0, np.empty((1, 2)), 1, [0.0], [])


@pytest.mark.parametrize(
    "columns, shared_cols, row_cols, readout_col, match",
    [
        (3, [0], [], 1, "written by nothing"),  # column 2 unwritten
        (2, [0, 1], [], 1, "written twice"),
        (2, [0], [], 2, "out of the row"),
    ],
)
def test_a_plan_that_does_not_tile_the_row_is_refused(
    columns, shared_cols, row_cols, readout_col, match
):
    ring = TimeRing(geometry([(1000, 4)], 2))
    with pytest.raises(ValueError, match=match):
        RowPlan(columns, shared_cols, row_cols, [Readout(ring, readout_col, ((0, 0),))], [])


def test_a_readout_outside_its_ring_is_refused():
    ring = TimeRing(geometry([(1000, 4)], 2))
    with pytest.raises(ValueError, match="out of the ring"):
        RowPlan(1, [], [], [Readout(ring, 0, ((1, 0),))], [])
    with pytest.raises(ValueError, match="out of the ring"):
        RowPlan(1, [], [], [Readout(ring, 0, (), ((0, 2),))], [])


# --- building ----------------------------------------------------------------------------------


def test_the_build_is_cached_per_source_and_interpreter(tmp_path, monkeypatch):
    path = kernel.build(tmp_path)
    assert path.parent == tmp_path and path.exists()
    assert not list(tmp_path.glob(".ring-*")), "no temporary file left behind"
    module = kernel.import_from(path)
    assert module.MAX_METRICS == 64

    def no_compiler(*a, **kw):
        raise AssertionError("a built kernel is not rebuilt")

    monkeypatch.setattr(subprocess, "run", no_compiler)
    assert kernel.build(tmp_path) == path
    # another source is another file
    src = tmp_path / "ring.c"
    src.write_text(kernel.SOURCE.read_text() + "\n/* edited */\n")
    monkeypatch.setattr(kernel, "SOURCE", src)
    assert kernel.library_path(tmp_path) != path


def test_without_gcc_the_error_says_what_to_do(tmp_path, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda n: None if n == "gcc" else real_which(n))
    with pytest.raises(kernel.KernelUnavailable, match=r"gcc is not on PATH.*features kernel"):
        kernel.build(tmp_path / "empty")


def test_a_compile_error_is_reported_with_gccs_message(tmp_path, monkeypatch):
    src = tmp_path / "ring.c"
    src.write_text("this is not C\n")
    monkeypatch.setattr(kernel, "SOURCE", src)
    with pytest.raises(kernel.KernelUnavailable, match="gcc failed"):
        kernel.build(tmp_path / "out")
    assert not list((tmp_path / "out").glob("*")), "a failed build leaves nothing to load"


def test_nan_is_pythons():
    """The kernel's NaN for an empty window's rate is float('nan')'s bit pattern."""
    g = geometry([(1000, 1)], 1)
    plan = RowPlan(1, [], [], [Readout(TimeRing(g), 0, (), ((0, 0),))], [])
    out = np.zeros((1, 1))
    plan.fill([None], 0, out, 1, [], [])
    assert math.isnan(out[0, 0])
    assert out.tobytes() == np.array([float("nan")]).tobytes()


def test_random_rings_do_not_alias_their_input():
    """update never writes into the value it was given (values are shared by tables)."""
    rng = random.Random(3)
    ring = TimeRing(geometry([(1000, 5), (60_000, 3)], 4))
    v = ring.update_one(None, Increment(0, [1, 2, 3, 4]))
    for _ in range(200):
        frozen = bytes(v)
        nv = ring.update_one(v, Increment(rng.randrange(0, 10**6), [1, 1, 1, 1]))
        assert v == frozen
        v = nv


def test_paths_are_under_the_kernel_dir(tmp_path):
    p = kernel.library_path(Path(tmp_path))
    assert p.name.startswith("ring-") and p.parent == tmp_path

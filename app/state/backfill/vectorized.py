"""The final online state of a table of outcomes, vectorized (numpy over Arrow columns).

Equal, byte for byte, to `replay.replay` over the same outcomes in replay order (event_time,
ties in table order, repeated request_ids dropped keeping the first): the package docstring
says why that order. What each part of the state is, without a loop per outcome:

- time rings (feature windows, app.state.windows.time): a slot's final value depends on no
  order. An outcome of bucket b goes to slot b % buckets; a slot holding an older bucket is
  taken over, a newer one drops the outcome. So a slot ends up holding the newest bucket that
  maps to it (at least -1, the empty slot's index) with the sum of every outcome of exactly
  that bucket. Per window: sort by (key, slot) keeping time order, sum each run of one
  bucket, keep each slot's last run.
- count rings (success rates, app.state.windows.count): the k-th outcome of a key (0-based,
  replay order) sits at position k % B if it is one of the last B; the header holds the count
  of outcomes (mod 2**32), count % B, min(count, B) and the approvals and route failures
  among the kept ones.
- last decline: a card's issuer decline with the largest (event_time, replay position), which
  in replay order is simply its last one (the reference replaces on equal times).

Memory: the dicts themselves are the bound (about 2.2 kB per card-entity key); the dense
temporaries are built CHUNK_KEYS keys at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.features.definitions import ENTITIES, HARD_CODES, METRICS, OWNERS
from app.features.online import PLANS, last_decline_key
from app.state.windows.count import APPROVED, ISSUER_DECLINE, ROUTE_FAILURE
from app.state.windows.time import Geometry

Progress = Callable[[str], None]

# 4,096 keys x 31 slots x 9 int64 = 9 MB of dense rings at a time (the card entity, the
# widest); a week of the steady scenario has ~90,000 card x merchant x amount keys per 100,000
# outcomes, 190 MB of values.
CHUNK_KEYS = 1 << 12
# The count ring's header packs n and pos as u16 (app.state.windows.count._RING_HEADER).
MAX_SR_WINDOW = 0xFFFF

# Columns compute() reads. Key fields become strings exactly as Entity.key's str() makes them
# (integers print the same in Arrow and Python); `initiator` may be missing (schema default CIT).
KEY_FIELDS = tuple(
    dict.fromkeys(
        [f for e in ENTITIES for f in e.fields]
        + ["card_fingerprint", "route_id", "bin", "network", "issuer_country"]
    )
)
INT_FIELDS = ("event_time", "attempt", "amount_minor")
STR_FIELDS = ("response_code", "failure_side")
REQUIRED = ("request_id", *INT_FIELDS, "approved", *STR_FIELDS) + tuple(
    f for f in KEY_FIELDS if f not in INT_FIELDS
)
OPTIONAL = ("initiator",)

# Table names in the worker (app/worker/app.py) of the three stores.
STORE_NAMES = ("card-features", "feature-state", "route-stats")


class BackfillError(ValueError):
    """The log cannot be backfilled as it is (missing column, null, wrong type): the CLI prints
    the message and exits with status 2."""


@dataclass(frozen=True)
class BackfillState:
    """The three stores a worker learns into, as the worker's tables hold them (without the
    offset marker the new table format adds: that is the loader's business)."""

    card: dict[bytes, bytes]  # card-features: card entities' rings + card_last|<card>
    features: dict[bytes, bytes]  # feature-state: route / BIN / merchant entities' rings
    route_stats: dict[bytes, bytes]  # route-stats: success-rate count rings
    sr_window: int  # B of the count rings (AUTHPILOT_SR_WINDOW when computed)
    as_of_ms: int | None  # the state after every outcome with event_time <= as_of_ms
    outcomes: int  # outcomes in the state
    duplicates: int = 0  # rows dropped as a repeated request_id
    after_as_of: int = 0  # rows left out because event_time > as_of_ms
    keys_per_entity: dict[str, int] = field(default_factory=dict)

    def stores(self) -> dict[str, dict[bytes, bytes]]:
        """Worker table name -> its values."""
        return dict(zip(STORE_NAMES, (self.card, self.features, self.route_stats), strict=True))


def compute(table: pa.Table, sr_window: int, as_of_ms: int | None = None,
            progress: Progress | None = None) -> BackfillState:  # fmt: skip
    """The state after replaying `table`'s outcomes (rows in log order) in replay order, up to
    and including event_time `as_of_ms` (default: the newest outcome)."""
    if not 1 <= sr_window <= MAX_SR_WINDOW:
        raise BackfillError(f"sr_window must be in 1..{MAX_SR_WINDOW}, got {sr_window}")
    say = progress or (lambda _: None)
    table, strings = _normalized(table)
    rows = _first_copies(table["request_id"])
    duplicates = table.num_rows - len(rows)
    t = table["event_time"].to_numpy()[rows]
    if as_of_ms is None and len(t):
        as_of_ms = int(t.max())
    if as_of_ms is not None:
        rows, t = rows[t <= as_of_ms], t[t <= as_of_ms]
    after = table.num_rows - duplicates - len(rows)
    # Replay order: event_time, ties in log order (a stable sort over rows in log order).
    # Everything below indexes outcomes by replay position; `rows` maps them to table rows.
    rows = rows[np.argsort(t, kind="stable")]
    n = len(rows)
    say(f"{n:,} outcomes in replay order ({duplicates:,} duplicates, {after:,} after as-of)")
    card: dict[bytes, bytes] = {}
    features: dict[bytes, bytes] = {}
    stats: dict[bytes, bytes] = {}
    per_entity: dict[str, int] = {}
    if n:
        cols = _Outcomes.of(table, rows)
        assert (np.diff(cols.t) >= 0).all(), "outcomes are in time order"
        keyer = _Keyer(strings, rows)
        for p in PLANS:
            name = p.entity.name
            keys, code = keyer.keys(p.entity.fields, _entity_key(name))
            out = card if p.owner == "card" else features
            before = len(out)
            _time_rings(p.ring.g, keys, code, cols.t, cols.incr, out)
            if len(out) - before != len(keys):
                raise AssertionError(f"entity {name}: keys collide with another entity")
            per_entity[name] = len(keys)
            say(f"{name}: {len(keys):,} keys")
        last = _last_declines(keyer, cols)
        per_entity["card_last"] = len(last)
        card.update(last)
        say(f"card_last: {len(last):,} keys")
        _count_rings(keyer, cols.code, sr_window, stats)
        say(f"success-rate rings: {len(stats):,} keys")
    return BackfillState(card, features, stats, sr_window, as_of_ms, n, duplicates, after,
                         per_entity)  # fmt: skip


def aged_out_windows(as_of_ms: int, now_ms: int) -> list[str]:
    """The feature windows (by name) in which a worker reading at now_ms sees nothing of a state
    as of as_of_ms: its newest bucket has left [now // width - buckets + 1, now // width]."""
    windows = {w.name: w for e in ENTITIES for w in e.windows}
    return [
        w.name
        for w in sorted(windows.values(), key=lambda w: w.width_s * w.buckets)
        if as_of_ms // (w.width_s * 1000) < now_ms // (w.width_s * 1000) - w.buckets + 1
    ]


# ---------------------------------------------------------------- columns


def _normalized(table: pa.Table) -> tuple[pa.Table, dict[str, pa.Array]]:
    """The columns compute() reads, typed as the reference sees them (nulls refused), and the
    key fields as the strings Entity.key's str() makes of them."""
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise BackfillError(f"outcomes lack required column(s): {', '.join(missing)}")
    cols: dict[str, pa.Array] = {}
    for name in (*REQUIRED, *OPTIONAL):
        col = table[name].combine_chunks() if name in table.column_names else None
        if col is None or (name in OPTIONAL and pa.types.is_null(col.type)):
            cols[name] = pa.nulls(table.num_rows, pa.string())
            continue
        if isinstance(col, pa.DictionaryArray):
            col = col.dictionary_decode()
        if name not in OPTIONAL and col.null_count:
            raise BackfillError(f"outcomes column {name!r} has {col.null_count:,} null(s)")
        typ = col.type
        if name in INT_FIELDS or (name in KEY_FIELDS and pa.types.is_integer(typ)):
            if not pa.types.is_integer(typ):
                raise BackfillError(f"outcomes column {name!r} is {typ}, not an integer")
            col = col.cast(pa.int64())
        elif name == "approved":
            if not pa.types.is_boolean(typ):
                raise BackfillError(f"outcomes column 'approved' is {typ}, not a boolean")
        elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
            col = col.cast(pa.string())
        else:
            raise BackfillError(f"outcomes column {name!r} is {typ}, not a string")
        cols[name] = col
    # str(int) prints as Arrow's integer-to-string cast does (checked by the property test)
    keys = {f: cols[f].cast(pa.string()) for f in KEY_FIELDS}
    return pa.table(cols), keys


def _first_copies(ids: pa.ChunkedArray) -> np.ndarray:
    """Row indices of each request_id's first copy, in log order (Kafka delivers at least once:
    a repeat is the same outcome again, and the first copy holds its place in the log)."""
    return _first_positions(pc.dictionary_encode(ids.combine_chunks()).indices.to_numpy())


@dataclass(frozen=True)
class _Outcomes:
    """Per outcome (replay order): time, the METRICS increments, the count ring's code, and
    whether it is an issuer decline and a hard one (last decline)."""

    t: np.ndarray
    incr: np.ndarray  # (n, len(METRICS)) int64
    code: np.ndarray  # uint8: APPROVED, ISSUER_DECLINE, ROUTE_FAILURE
    issuer_decline: np.ndarray
    hard_code: np.ndarray

    @classmethod
    def of(cls, table: pa.Table, rows: np.ndarray) -> _Outcomes:
        def arr(expr: pa.Array | pa.ChunkedArray) -> np.ndarray:
            return np.asarray(expr.to_numpy(zero_copy_only=False))[rows]

        approved = arr(table["approved"])
        route_fail = arr(pc.equal(table["failure_side"], "ROUTE"))
        hard_code = arr(pc.is_in(table["response_code"], pa.array(sorted(HARD_CODES))))
        issuer = ~approved & ~route_fail
        reatt = arr(table["attempt"]) > 1
        mit = arr(pc.fill_null(pc.equal(table["initiator"], "MIT"), False))
        # app.features.definitions.increments, one column per metric
        inc = {
            "n": np.ones(len(approved), np.int64),
            "ok": approved,
            "soft": issuer & ~hard_code,
            "hard": issuer & hard_code,
            "route_fail": route_fail,
            "amount": arr(table["amount_minor"]),
            "reatt_cit": reatt & ~mit,
            "reatt_mit": reatt & mit,
        }
        if set(inc) != set(METRICS):
            raise AssertionError(f"backfill increments {sorted(inc)} differ from {METRICS}")
        incr = np.stack([np.asarray(inc[m], np.int64) for m in METRICS], axis=1)
        # app.state.windows.count.outcome_code
        code = np.where(approved, APPROVED, np.where(route_fail, ROUTE_FAILURE, ISSUER_DECLINE))
        return cls(arr(table["event_time"]), incr, code.astype(np.uint8), issuer, hard_code)


class _Keyer:
    """Keys built from key fields, one row per outcome in replay order. Each field is
    dictionary-encoded once; a key's string is built only for the distinct combinations of
    its fields' codes and then encoded again, so two combinations that print the same key
    (a field holding the separator) are one key, as they are in the reference's dict."""

    def __init__(self, strings: dict[str, pa.Array], rows: np.ndarray) -> None:
        self._strings = strings  # key field -> its values as strings, table order
        self.rows = rows  # replay position -> table row
        self._codes: dict[str, tuple[np.ndarray, int]] = {}

    def strings(self, name: str) -> pa.Array:
        """A key field as the string Entity.key builds from it (table order)."""
        return self._strings[name]

    def codes(self, name: str) -> tuple[np.ndarray, int]:
        """The field's code per outcome (replay order) and the number of distinct values."""
        if name not in self._codes:
            d = pc.dictionary_encode(self.strings(name))
            codes = d.indices.to_numpy().astype(np.int64)[self.rows]
            self._codes[name] = (codes, len(d.dictionary))
        return self._codes[name]

    def keys(self, fields: Sequence[str], build: Callable[[list[pa.Array]], pa.Array],
             where: np.ndarray | None = None) -> tuple[list[bytes], np.ndarray]:  # fmt: skip
        """Distinct keys `build(field strings)` (of the outcomes `where` selects, replay
        positions) as bytes, and each selected outcome's index into them."""
        code: np.ndarray | None = None
        for f in fields:
            c, size = self.codes(f)
            c = c if where is None else c[where]
            # < n distinct pairs so far: the product stays far below 2**63
            code = c if code is None else _factorize(code * size + c)[0]
        assert code is not None, "a key has at least one field"
        inverse, first = _factorize(code)
        pos = first if where is None else where[first]
        src = pa.array(self.rows[pos])
        strings = build([self.strings(f).take(src) for f in fields])
        d = pc.dictionary_encode(strings)
        distinct: list[bytes] = pc.cast(d.dictionary, pa.binary()).to_pylist()
        return distinct, d.indices.to_numpy().astype(np.int64)[inverse]


def _factorize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value's index into the distinct values (first-appearance order) and the position of
    each distinct value's first appearance. A hash (Arrow's dictionary_encode), not a sort:
    np.unique's sorts were a third of compute() on 100,000 outcomes."""
    idx = pc.dictionary_encode(pa.array(x)).indices.to_numpy().astype(np.int64)
    return idx, _first_positions(idx)


def _first_positions(idx: np.ndarray) -> np.ndarray:
    """Where each index of a first-appearance-ordered encoding appears first: where it exceeds
    every index before it."""
    if not len(idx):
        return np.zeros(0, np.int64)
    seen = np.maximum.accumulate(idx)
    new = np.ones(len(idx), bool)
    new[1:] = seen[1:] > seen[:-1]
    return np.flatnonzero(new)


def _entity_key(name: str) -> Callable[[list[pa.Array]], pa.Array]:
    """Entity.key over arrays: name|field|... (route_id being the route taken)."""
    return lambda fields: _join(name, *fields, sep="|")


def _join(*parts: str | pa.Array, sep: str = "") -> pa.Array:
    """Element-wise concatenation of string arrays and literals (Entity.key, stat_keys)."""
    args = [pa.scalar(p) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, sep)


def _put(out: dict[bytes, bytes], keys: list[bytes], values: np.ndarray, size: int) -> None:
    """keys[i] -> bytes of the i-th `size` bytes of the C-contiguous `values`."""
    mv = values.reshape(-1).view(np.uint8).data
    out.update(zip(keys, [bytes(mv[i : i + size]) for i in range(0, len(mv), size)], strict=True))


# ---------------------------------------------------------------- time rings


def _time_rings(g: Geometry, keys: list[bytes], key: np.ndarray, t: np.ndarray,
                incr: np.ndarray, out: dict[bytes, bytes]) -> None:  # fmt: skip
    """TimeRing values (int64 (slots, 1 + metrics), column 0 the bucket index) of every key,
    from outcomes in time order (t ascending)."""
    flats, buckets, sums = [], [], []
    for w in range(len(g.buckets)):
        b = t // g.width_ms[w]
        flat = key * g.slots + (g.starts[w] + b % g.buckets[w])
        # stable by slot alone: t ascending makes buckets ascending inside a slot (one sort
        # instead of lexsort's two)
        o = np.argsort(flat, kind="stable")
        f, bo = flat[o], b[o]
        run = np.ones(len(f), bool)
        run[1:] = (f[1:] != f[:-1]) | (bo[1:] != bo[:-1])
        start = np.flatnonzero(run)
        rf, rb = f[start], bo[start]
        newest = np.ones(len(start), bool)  # a slot's last run holds its newest bucket
        newest[:-1] = rf[1:] != rf[:-1]
        # an empty slot holds bucket -1: an older bucket never takes it over
        keep = newest & (rb >= -1)
        flats.append(rf[keep])
        buckets.append(rb[keep])
        sums.append(np.add.reduceat(incr[o], start, axis=0)[keep])
    flat_all = np.concatenate(flats)
    o = np.argsort(flat_all, kind="stable")
    flat_all, bucket_all, sum_all = flat_all[o], np.concatenate(buckets)[o], np.concatenate(sums)[o]
    slots, cols = g.slots, 1 + g.metrics
    # One chunk buffer, reused: writing a fresh 200 MB array measured ~0.6 s of page faults
    # alone per 100,000 outcomes on this machine, refilling a mapped one a few ms.
    dense = np.empty((min(len(keys), CHUNK_KEYS) * slots, cols), np.int64)
    for k0 in range(0, len(keys), CHUNK_KEYS):
        k1 = min(len(keys), k0 + CHUNK_KEYS)
        d = dense[: (k1 - k0) * slots]
        d[:, 0] = -1
        d[:, 1:] = 0
        a, z = np.searchsorted(flat_all, [k0 * slots, k1 * slots])
        at = flat_all[a:z] - k0 * slots
        d[at, 0] = bucket_all[a:z]
        d[at, 1:] = sum_all[a:z]
        _put(out, keys[k0:k1], d, slots * cols * 8)


# ---------------------------------------------------------------- last decline


_LAST_DTYPE = np.dtype([("t", ">i8"), ("hard", "i1")])  # app.features.online._LAST ">qb"


def _last_declines(keyer: _Keyer, cols: _Outcomes) -> dict[bytes, bytes]:
    """card_last|<card> -> (time, hard) of each card's last issuer decline in replay order."""
    declines = np.flatnonzero(cols.issuer_decline)
    if not len(declines):
        return {}
    prefix = last_decline_key("")
    keys, card = keyer.keys(("card_fingerprint",), lambda a: _join(prefix, a[0]), declines)
    # each card's last decline: its first occurrence counted from the end
    u, from_end = np.unique(card[::-1], return_index=True)
    last = declines[len(declines) - 1 - from_end]
    rec = np.zeros(len(keys), _LAST_DTYPE)
    rec["t"][u] = cols.t[last]
    rec["hard"][u] = cols.hard_code[last]
    out: dict[bytes, bytes] = {}
    _put(out, keys, rec, _LAST_DTYPE.itemsize)
    return out


# ---------------------------------------------------------------- success-rate rings


def _sr_dtype(window: int) -> np.dtype:
    """count._RING_HEADER (">IHHHH": updates, pos, n, successes, route failures) + the ring."""
    return np.dtype([("updates", ">u4"), ("pos", ">u2"), ("n", ">u2"), ("ok", ">u2"),
                     ("fail", ">u2"), ("ring", "u1", (window,))])  # fmt: skip


def _count_rings(keyer: _Keyer, code: np.ndarray, window: int,
                 out: dict[bytes, bytes]) -> None:  # fmt: skip
    """CountRing values of the three stat keys of every outcome (count.stat_keys)."""
    levels = [
        keyer.keys(("route_id", "bin"), lambda a: _join(a[0], "|bin:", a[1])),
        keyer.keys(
            ("route_id", "network", "issuer_country"),
            lambda a: _join(a[0], "|cc:", a[1], ":", a[2]),
        ),
        keyer.keys(("route_id",), lambda a: _join(a[0], "|all")),
    ]
    # one key space over the levels: two levels may print the same key (a route id holding
    # "|bin:"), and then the reference pushes both into one ring
    d = pc.dictionary_encode(pa.array([k for ks, _ in levels for k in ks], pa.binary()))
    keys: list[bytes] = d.dictionary.to_pylist()
    merged = d.indices.to_numpy().astype(np.int64)
    offsets = np.cumsum([0] + [len(k) for k, _ in levels])
    # one row per (outcome, level), outcome-major: the order update_success_rate pushes them
    kc = np.stack([merged[off + c] for off, (_, c) in zip(offsets, levels, strict=False)], 1)
    kc = kc.ravel()
    ev = np.repeat(code, len(levels))
    o = np.argsort(kc, kind="stable")  # inside a key: replay order
    ko, co = kc[o], ev[o]
    count = np.bincount(kc, minlength=len(keys))
    k = np.arange(len(ko)) - (np.cumsum(count) - count)[ko]  # 0-based index within its key
    kept = k >= (count - window)[ko]  # one of the key's last `window` outcomes
    rec = np.zeros(len(keys), _sr_dtype(window))
    rec["ring"][ko[kept], k[kept] % window] = co[kept]
    rec["updates"] = count & 0xFFFFFFFF
    rec["pos"] = count % window
    rec["n"] = np.minimum(count, window)
    rec["ok"] = np.bincount(ko[kept & (co == APPROVED)], minlength=len(keys))
    rec["fail"] = np.bincount(ko[kept & (co == ROUTE_FAILURE)], minlength=len(keys))
    _put(out, keys, rec, rec.dtype.itemsize)


assert set(OWNERS) == {p.owner for p in PLANS}, "every owner has a plan"

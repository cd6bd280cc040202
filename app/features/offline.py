"""Offline features: the same definitions as DuckDB SQL over an event log, point-in-time correct.

Input: an event log as app.contracts.ingest defines it (requests and outcomes, each one Parquet
file or a folder of parts; absent optional columns take their defaults). Output: one row per
outcome (an attempt on the route it took) with the feature columns in FEATURE_NAMES order, the
label `approved`, and ids. Only outcomes with event_time strictly before the request's time count.

A window [start, T) of an entity is total(before T) - total(before start), where total is the
entity key's running sum of outcome metrics in time order, and each "before" is an ASOF join
(the latest running total strictly earlier than the time). No range join, no per-bucket fan-out:
a first formulation with window functions over (key, bucket) took about 30 s per entity and
window on a million rows; this one sorts each entity's outcomes once.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from app.contracts.ingest import IngestReport, require_valid_log, table_sql
from app.contracts.vocab import CNP_CHANNELS, DAY_MS, FUNDING, NETWORKS
from app.features.definitions import ENTITIES, FEATURE_NAMES, HARD_CODES, Entity, Window
from app.features.paycycle import payday_starts_for


def _key_sql(e: Entity, alias: str, route_col: str) -> str:
    parts = [f"'{e.name}'"]
    for f in e.fields:
        col = route_col if f == "route_id" else f"{alias}.{f}"
        parts.append(f"CAST({col} AS VARCHAR)")
    return " || '|' || ".join(parts)


def _metric_sql() -> dict[str, str]:
    hard = ", ".join(f"'{c}'" for c in sorted(HARD_CODES))
    issuer = "(NOT o.approved AND o.failure_side <> 'ROUTE')"
    return {
        "n": "1",
        "ok": "CAST(o.approved AS BIGINT)",
        "soft": f"CAST({issuer} AND o.response_code NOT IN ({hard}) AS BIGINT)",
        "hard": f"CAST({issuer} AND o.response_code IN ({hard}) AS BIGINT)",
        "route_fail": "CAST(o.failure_side = 'ROUTE' AS BIGINT)",
        "amount": "o.amount_minor",
        "reatt_cit": "CAST(o.attempt > 1 AND o.initiator <> 'MIT' AS BIGINT)",
        "reatt_mit": "CAST(o.attempt > 1 AND o.initiator = 'MIT' AS BIGINT)",
    }


def _needed(e: Entity, w: Window) -> list[str]:
    ms = ["n"] + [m for wn, m in (*e.counts, *e.rates) if wn == w.name]
    return list(dict.fromkeys(ms))


def build_matrix(log_dir: Path, con: duckdb.DuckDBPyConnection | None = None,
                 progress: bool = False, candidates_since_ms: int | None = None,
                 ) -> duckdb.DuckDBPyRelation:  # fmt: skip
    """The training matrix as a DuckDB relation (call .df() / .arrow() / write_parquet).

    candidates_since_ms: instead, one row per candidate route of every answered attempt from
    that time on (route_id the candidate, `approved` the attempt's label, plus taken_route,
    amount_minor and fee_minor): what another policy would have scored, for off-policy
    estimates (app.lifecycle.evaluate). Features are the same point-in-time definitions."""
    con = con or duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE OR REPLACE VIEW req AS {table_sql(log_dir, 'requests')}")
    con.execute(f"CREATE OR REPLACE VIEW o AS {table_sql(log_dir, 'outcomes')}")
    msql = _metric_sql()
    t0 = time.monotonic()

    def tick(what: str) -> None:
        if progress:
            print(f"  {what}: {time.monotonic() - t0:5.1f}s", file=sys.stderr, flush=True)

    # One training row per outcome: the request as it was sent, the route it took, and for
    # each entity its key and for each window the first millisecond of its oldest bucket.
    each = candidates_since_ms is not None
    route = "r.cand.route_id" if each else "r.taken_route"
    key_cols, start_cols = [], []
    for e in ENTITIES:
        key_cols.append(f"{_key_sql(e, 'r', route)} AS k_{e.name}")
        for w in e.windows:
            width = w.width_s * 1000
            start_cols.append(
                f"(r.event_time // {width} - {w.buckets - 1}) * {width} AS s_{e.name}_{w.name}"
            )
    cand = (
        "unnest(r.candidates) AS cand"
        if each
        else "list_filter(r.candidates, lambda c: c.route_id = o.route_id)[1] AS cand"
    )
    where = f"WHERE r.event_time >= {int(candidates_since_ms or 0)}" if each else ""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE rows AS
        SELECT row_number() OVER (ORDER BY r.o_time, r.request_id, {route}) AS row_id,
               r.*, {", ".join(key_cols)}, {", ".join(start_cols)}
        FROM (SELECT r.*, o.event_time AS o_time, o.route_id AS taken_route,
                     o.approved AS label, {cand}
              FROM o JOIN req r USING (request_id) {where}) r"""
    )
    tick("training rows")
    # Per entity: running totals of every needed metric over the entity's outcomes in time
    # order (one row per key and millisecond). A window [start, T) is then total(before T) -
    # total(before start): two ASOF lookups instead of a range join.
    feats: dict[str, str] = {}  # feature name -> expression over the f_<entity> tables
    for e in ENTITIES:
        ms = list(dict.fromkeys(m for w in e.windows for m in _needed(e, w)))
        okey = _key_sql(e, "o", "o.route_id")
        per_ms = ", ".join(f"sum({msql[m]}) AS {m}" for m in ms)
        run = ", ".join(
            f"sum({m}) OVER (PARTITION BY k ORDER BY t ROWS UNBOUNDED PRECEDING) AS {m}" for m in ms
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE c_{e.name} AS
            SELECT k, t, {run} FROM (
                SELECT {okey} AS k, o.event_time AS t, {per_ms} FROM o GROUP BY ALL)"""
        )
        # ASOF joins on a narrow projection of the rows (id, key, times): carrying the wide
        # request columns through a chain of ASOF joins cost ~5 s per join on 1M rows.
        joins = [f"ASOF LEFT JOIN c_{e.name} a ON a.k = r.k AND r.event_time > a.t"]
        starts, out = [], []
        for w in e.windows:
            joins.append(
                f"ASOF LEFT JOIN c_{e.name} b_{w.name} "
                f"ON b_{w.name}.k = r.k AND r.s_{w.name} > b_{w.name}.t"
            )
            starts.append(f"s_{e.name}_{w.name} AS s_{w.name}")
            for m in _needed(e, w):
                out.append(f"coalesce(a.{m}, 0) - coalesce(b_{w.name}.{m}, 0) AS w{w.name}_{m}")
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE f_{e.name} AS
            SELECT r.row_id, {", ".join(out)}
            FROM (SELECT row_id, event_time, k_{e.name} AS k, {", ".join(starts)} FROM rows) r
            {" ".join(joins)}"""
        )
        f = f"f_{e.name}"
        for wn, m in e.counts:
            feats[f"{e.name}_{wn}_{m}"] = f"CAST({f}.w{wn}_{m} AS DOUBLE)"
        for wn, m in e.rates:
            feats[f"{e.name}_{wn}_{m}_rate"] = (
                f"CASE WHEN {f}.w{wn}_n > 0 THEN {f}.w{wn}_{m} / {f}.w{wn}_n ELSE NULL END"
            )
        tick(f"entity {e.name}")
    hard = ", ".join(f"'{c}'" for c in sorted(HARD_CODES))
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE lastdec AS
        SELECT card_fingerprint, event_time AS t,
               max(CAST(response_code IN ({hard}) AS DOUBLE)) AS hard
        FROM o WHERE NOT approved AND failure_side <> 'ROUTE' GROUP BY ALL"""
    )
    # the pay calendar as a table of payday starts per issuer country (app.features.paycycle)
    ((t0, t1),) = con.execute("SELECT min(event_time), max(event_time) FROM rows").fetchall()
    countries = [c for (c,) in con.execute("SELECT DISTINCT issuer_country FROM rows").fetchall()]
    pays = [(c, t) for c in countries for t in payday_starts_for(c, int(t0 or 0), int(t1 or 0))]
    con.execute("CREATE OR REPLACE TEMP TABLE paystarts (country VARCHAR, t BIGINT)")
    if pays:
        con.executemany("INSERT INTO paystarts VALUES (?, ?)", pays)
    net = " ".join(f"WHEN '{n}' THEN {i}" for i, n in enumerate(NETWORKS))
    fund = " ".join(f"WHEN '{f}' THEN {i}" for i, f in enumerate(FUNDING))
    cnp = ", ".join(f"'{c}'" for c in sorted(CNP_CHANNELS))
    select = [
        "ln(1 + r.amount_minor) AS log_amount",
        "CAST(r.attempt AS DOUBLE) AS attempt",
        "CAST(hour(to_timestamp(r.event_time / 1000.0)) AS DOUBLE) AS hour_of_day",
        "CAST(isodow(to_timestamp(r.event_time / 1000.0)) - 1 AS DOUBLE) AS day_of_week",
        f"CAST(r.channel IN ({cnp}) AS DOUBLE) AS card_not_present",
        "CAST(r.initiator = 'MIT' AS DOUBLE) AS is_mit",
        "CAST(r.recurring AS DOUBLE) AS recurring",
        "CAST(r.sca_required AS DOUBLE) AS sca_required",
        "CAST(r.three_ds AS DOUBLE) AS three_ds",
        f"CAST(CASE r.network {net} END AS DOUBLE) AS network_code",
        f"CAST(CASE r.funding {fund} END AS DOUBLE) AS funding_code",
        f"(r.event_time - pl.t) / {float(DAY_MS)} AS days_since_payday",
        f"(pn.t - r.event_time) / {float(DAY_MS)} AS days_to_payday",
        "CAST(coalesce(r.cand.acquirer_country IS NOT NULL "
        "AND r.cand.acquirer_country <> r.issuer_country, false) AS DOUBLE) AS cross_border",
        "r.cand.fee_minor * 10000.0 / r.amount_minor AS route_fee_bps",
    ]
    select += [f"{expr} AS {name}" for name, expr in feats.items()]
    select += [
        "(r.event_time - ld.t) / 1000.0 AS secs_since_last_decline",
        "ld.hard AS last_decline_hard",
        f"CAST(coalesce(ld.t // {DAY_MS} = r.event_time // {DAY_MS}, false) AS DOUBLE) "
        "AS last_decline_today",
        "CAST(coalesce(ld.t >= pl.t, false) AS DOUBLE) AS last_decline_this_cycle",
    ]
    extra = ", r.taken_route, r.amount_minor, r.cand.fee_minor AS fee_minor" if each else ""
    sql = f"""SELECT r.row_id, r.request_id, {route} AS route_id, r.event_time,
                     CAST(r.label AS INTEGER) AS approved, {", ".join(select)}{extra}
              FROM rows r
              {" ".join(f"JOIN f_{e.name} USING (row_id)" for e in ENTITIES)}
              ASOF LEFT JOIN lastdec ld
                ON ld.card_fingerprint = r.card_fingerprint AND r.event_time > ld.t
              ASOF LEFT JOIN paystarts pl ON pl.country = r.issuer_country AND r.event_time >= pl.t
              ASOF LEFT JOIN paystarts pn ON pn.country = r.issuer_country AND r.event_time < pn.t
              ORDER BY r.row_id"""
    rel = con.sql(sql)
    names = tuple(rel.columns[5 : 5 + len(FEATURE_NAMES)])
    assert names == FEATURE_NAMES, "SQL column order differs from FEATURE_NAMES"
    return rel


@dataclass(frozen=True)
class BuiltMatrix:
    """What write_matrix wrote: the matrix, its row count, the contract check of its log, and
    the data-quality summary beside it (JSON, markdown)."""

    path: Path
    rows: int
    report: IngestReport
    quality: tuple[Path, Path] | None


def write_matrix(log_dir: Path, out: Path, progress: bool = True,
                 quality: bool = True) -> BuiltMatrix:  # fmt: skip
    """build_matrix over log_dir written to out (.parquet), with its quality summary beside it.

    The log is checked against the ingest contract first: a log that breaks it raises
    app.contracts.ingest.LogRejected and nothing is written (a log spelling VISA `visa` used to
    build a matrix with NaN network codes and exit 0)."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # the build prints its own stage times
    report = require_valid_log(log_dir, con)
    rel = build_matrix(log_dir, con, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    rel.write_parquet(str(out))
    (rows,) = con.execute(f"SELECT count(*) FROM '{out}'").fetchall()[0]
    paths = None
    if quality:
        from app.features.quality import write_quality

        paths = write_quality(log_dir, out, report, con)
    return BuiltMatrix(out, int(rows), report, paths)

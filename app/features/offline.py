"""Offline features: the same definitions as DuckDB SQL over an event log, point-in-time correct.

Input: a directory with requests.parquet (AuthorizationRequest fields, candidates as a list of
structs) and outcomes.parquet (AuthorizationOutcome fields). Output: one row per outcome (an
attempt on the route it took) with the feature columns in FEATURE_NAMES order, the label
`approved`, and ids. Only outcomes with event_time strictly before the request's time count.

Each (entity, window) is two cheap steps instead of one range join: whole earlier buckets come
from a per-bucket aggregate (at most n-1 rows per training row), and the current, partial bucket
from a running sum over outcomes and requests sorted together inside (key, bucket), requests
first at equal times, so an outcome at the request's own millisecond is not seen.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import duckdb

from app.features.definitions import (
    CNP_CHANNELS,
    ENTITIES,
    FEATURE_NAMES,
    FUNDING,
    HARD_CODES,
    METRICS,
    NETWORKS,
    Entity,
    Window,
)


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
                 progress: bool = False) -> duckdb.DuckDBPyRelation:  # fmt: skip
    """The training matrix as a DuckDB relation (call .df() / .arrow() / write_parquet)."""
    con = con or duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE OR REPLACE VIEW req AS SELECT * FROM '{log_dir / 'requests.parquet'}'")
    con.execute(f"CREATE OR REPLACE VIEW o AS SELECT * FROM '{log_dir / 'outcomes.parquet'}'")
    msql = _metric_sql()
    # one training row per outcome: the request as it was sent, the route it took
    con.execute(
        """CREATE OR REPLACE TEMP TABLE rows AS
        SELECT row_number() OVER (ORDER BY o.event_time, o.request_id) AS row_id,
               r.*, o.route_id AS taken_route, o.approved AS label,
               (SELECT c FROM unnest(r.candidates) AS t(c) WHERE c.route_id = o.route_id) AS cand
        FROM o JOIN req r USING (request_id)"""
    )
    outs = []
    t0 = time.monotonic()
    for e in ENTITIES:
        for w in e.windows:
            width = w.width_s * 1000
            ms = _needed(e, w)
            name = f"f_{e.name}_{w.name}"
            okey = _key_sql(e, "o", "o.route_id")
            rkey = _key_sql(e, "r", "r.taken_route")
            mcols = ", ".join(f"{msql[m]} AS {m}" for m in ms)
            zeros = ", ".join(f"0 AS {m}" for m in ms)
            sums = ", ".join(f"sum({m}) AS {m}" for m in ms)
            run = ", ".join(
                f"sum({m}) OVER (PARTITION BY k, b ORDER BY t, kind "
                f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS {m}"
                for m in ms
            )
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE {name} AS
                WITH oe AS (SELECT {okey} AS k, o.event_time // {width} AS b,
                                   o.event_time AS t, {mcols} FROM o),
                     re AS (SELECT row_id, {rkey} AS k, r.event_time // {width} AS b,
                                   r.event_time AS t FROM rows r),
                     agg AS (SELECT k, b, {sums} FROM oe GROUP BY k, b),
                     prior AS (
                        SELECT re.row_id, {", ".join(f"sum(agg.{m}) AS {m}" for m in ms)}
                        FROM re JOIN agg ON agg.k = re.k
                         AND agg.b BETWEEN re.b - {w.buckets - 1} AND re.b - 1
                        GROUP BY re.row_id),
                     ev AS (SELECT k, b, t, 1 AS kind, NULL::BIGINT AS row_id,
                                   {", ".join(ms)} FROM oe
                            UNION ALL
                            SELECT k, b, t, 0 AS kind, row_id, {zeros} FROM re),
                     cur AS (SELECT row_id, {run} FROM ev)
                SELECT re.row_id,
                       {", ".join(f"coalesce(prior.{m}, 0) + cur.{m} AS {m}" for m in ms)}
                FROM re JOIN cur ON cur.row_id = re.row_id
                LEFT JOIN prior ON prior.row_id = re.row_id"""
            )
            outs.append((e, w, name, ms))
            if progress:
                print(f"  features {name}: {time.monotonic() - t0:5.1f}s", file=sys.stderr)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE lastdec AS
        SELECT card_fingerprint, event_time AS t,
               CAST(response_code IN ({}) AS DOUBLE) AS hard
        FROM o WHERE NOT approved AND failure_side <> 'ROUTE'""".format(
            ", ".join(f"'{c}'" for c in sorted(HARD_CODES))
        )
    )
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
        "CAST(coalesce(r.cand.acquirer_country IS NOT NULL "
        "AND r.cand.acquirer_country <> r.issuer_country, false) AS DOUBLE) AS cross_border",
        "r.cand.fee_minor * 10000.0 / r.amount_minor AS route_fee_bps",
    ]
    joins = []
    for _e, _w, name, _ in outs:
        joins.append(f"JOIN {name} ON {name}.row_id = r.row_id")
    for e in ENTITIES:
        for wn, m in e.counts:
            select.append(f"CAST(f_{e.name}_{wn}.{m} AS DOUBLE) AS {e.name}_{wn}_{m}")
        for wn, m in e.rates:
            t = f"f_{e.name}_{wn}"
            select.append(
                f"CASE WHEN {t}.n > 0 THEN {t}.{m} / {t}.n ELSE NULL END AS {e.name}_{wn}_{m}_rate"
            )
    select += [
        "(r.event_time - ld.t) / 1000.0 AS secs_since_last_decline",
        "ld.hard AS last_decline_hard",
    ]
    sql = f"""SELECT r.row_id, r.request_id, r.taken_route AS route_id, r.event_time,
                     CAST(r.label AS INTEGER) AS approved, {", ".join(select)}
              FROM rows r {" ".join(joins)}
              ASOF LEFT JOIN lastdec ld
                ON ld.card_fingerprint = r.card_fingerprint AND r.event_time > ld.t
              ORDER BY r.row_id"""
    rel = con.sql(sql)
    cols = rel.columns[5:]
    assert tuple(cols) == FEATURE_NAMES, "SQL column order differs from FEATURE_NAMES"
    assert len(METRICS) == 8
    return rel


def main_build(argv: list[str]) -> int:
    """`authpilot features build --log DIR --out FILE`"""
    import argparse

    p = argparse.ArgumentParser(prog="authpilot features build")
    p.add_argument("--log", type=Path, required=True, help="dir with requests/outcomes.parquet")
    p.add_argument("--out", type=Path, required=True, help="training matrix (.parquet)")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    con = duckdb.connect()
    rel = build_matrix(a.log, con, progress=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    rel.write_parquet(str(a.out))
    n = con.sql(f"SELECT count(*) FROM '{a.out}'").fetchone()[0]
    dt = time.monotonic() - t0
    print(
        f"{n} rows x {len(FEATURE_NAMES)} features -> {a.out} in {dt:.1f}s ({n / dt:,.0f} rows/s)"
    )
    return 0

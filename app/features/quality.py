"""The data-quality summary `features build` writes next to the matrix: what the log held and
what the matrix learned from it, for a person to read before training.

`<matrix stem>.quality.json` and `.quality.md`: the contract check (warnings included), the
log's span and empty days, per column null rates and ranges (or approximate distinct counts),
approval and route-failure rates per segment (network, route, initiator, channel, funding,
attempt, domestic or cross-border), and per feature of the matrix its null rate, zero rate and
range, with the constant features named: a feature that never varies teaches nothing, and is
how wrong spellings used to show up (CNP and MIT features all zero). 3-5 s on a 1M-row log
and matrix, beside a build of 1.5-2 minutes.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from app.contracts.ingest import TABLES, IngestReport, Problem, read_layout, table_sql
from app.contracts.vocab import DAY_MS, FUNDING, NETWORKS
from app.features.definitions import FEATURE_NAMES, REQUEST_FEATURES

SEGMENTS: dict[str, str] = {
    "network": "o.network",
    "route_id": "o.route_id",
    "initiator": "o.initiator",
    "channel": "r.channel",
    "funding": "r.funding",
    "attempt": "CASE WHEN o.attempt >= 3 THEN '3+' ELSE CAST(o.attempt AS VARCHAR) END",
    "issuer": "CASE WHEN r.merchant_country = r.issuer_country THEN 'domestic' "
    "ELSE 'cross-border' END",
}
TOP_SEGMENTS = 20  # values shown per segment (most frequent first); routes rarely exceed it


def quality_paths(matrix: Path) -> tuple[Path, Path]:
    """Where the summary of `matrix` goes: beside it, same stem."""
    stem = matrix.with_suffix("")
    return stem.with_name(stem.name + ".quality.json"), stem.with_name(stem.name + ".quality.md")


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()[:19] + "Z"


def _num(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    return v


def _columns(
    con: duckdb.DuckDBPyConnection, name: str, present: set[str], rows: int
) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    aggs: list[str] = []
    keys: list[tuple[str, str]] = []
    for f in TABLES[name]:
        c = f'"{f.name}"'
        keys.append((f.name, "nulls"))
        aggs.append(f"count(*) - count({c})")
        if f.kind in ("int", "long", "double"):
            for what in ("min", "max", "avg"):
                keys.append((f.name, what))
                aggs.append(f"{what}({c})")
        elif f.kind == "boolean":
            keys.append((f.name, "true_rate"))
            aggs.append(f"avg(CAST({c} AS DOUBLE))")
        elif f.kind == "candidates":
            for what in ("min", "max", "avg"):
                keys.append((f.name, f"{what}_routes"))
                aggs.append(f"{what}(len({c}))")
        elif f.name != "request_id":  # unique in a log that passed the check
            # HyperLogLog, within ~2%: exact distinct counts of the id columns took 5 of the
            # summary's 8 s on 1M rows
            keys.append((f.name, "distinct_approx"))
            aggs.append(f"approx_count_distinct({c})")
    got = con.execute(f"SELECT {', '.join(aggs)} FROM ingest_q_{name}").fetchone() or ()
    for (col, what), v in zip(keys, got, strict=True):
        s = stats.setdefault(col, {"present": col in present})
        s[what] = _num(v)
        if what == "nulls":
            s["null_rate"] = _num(v / rows) if rows else None
    return stats


def _segments(con: duckdb.DuckDBPyConnection) -> dict[str, list[dict[str, Any]]]:
    # One join into a narrow table, then a group-by per segment: a join per segment cost ~1 s
    # each on 1M outcomes.
    cols = ", ".join(f"{expr} AS s_{name}" for name, expr in SEGMENTS.items())
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ingest_q_seg AS
            SELECT {cols}, CAST(o.approved AS DOUBLE) AS ok,
                   CAST(o.failure_side = 'ROUTE' AS DOUBLE) AS route_fail
            FROM ingest_q_outcomes o JOIN ingest_q_requests r USING (request_id)"""
    )
    (total,) = con.execute("SELECT count(*) FROM ingest_q_seg").fetchone() or (0,)
    out: dict[str, list[dict[str, Any]]] = {}
    for name in SEGMENTS:
        got = con.execute(
            f"""SELECT s_{name} AS v, count(*) AS n, avg(ok), avg(route_fail) FROM ingest_q_seg
                GROUP BY 1 ORDER BY n DESC, v LIMIT {TOP_SEGMENTS}"""
        ).fetchall()
        out[name] = [
            {
                "value": v,
                "rows": int(n),
                "share": _num(n / total) if total else None,
                "approval_rate": _num(a),
                "route_failure_rate": _num(f),
            }
            for v, n, a, f in got
        ]
    return out


def _matrix(con: duckdb.DuckDBPyConnection, matrix: Path) -> dict[str, Any]:
    src = "'" + str(matrix).replace("'", "''") + "'"
    aggs = ["count(*)", "avg(approved)"]
    for n in FEATURE_NAMES:
        c = f'"{n}"'
        aggs += [
            f"count(*) - count({c})",
            f"count_if({c} = 0)",
            f"min({c})",
            f"max({c})",
            f"avg({c})",
        ]
    got = con.execute(f"SELECT {', '.join(aggs)} FROM {src}").fetchone() or ()
    rows = int(got[0])
    feats: dict[str, Any] = {}
    for i, n in enumerate(FEATURE_NAMES):
        nulls, zeros, lo, hi, mean = got[2 + 5 * i : 7 + 5 * i]
        feats[n] = {
            "null_rate": _num(nulls / rows) if rows else None,
            "zero_rate": _num(zeros / rows) if rows else None,
            "min": _num(lo),
            "max": _num(hi),
            "mean": _num(mean),
        }
    constant = [n for n, s in feats.items() if s["min"] is None or s["min"] == s["max"]]
    return {"rows": rows, "label_rate": _num(got[1]), "features": feats, "constant": constant}


def summarize(
    log_dir: Path, matrix: Path, report: IngestReport, con: duckdb.DuckDBPyConnection | None = None
) -> dict[str, Any]:
    """The quality summary of a checked log and the matrix built from it (a JSON-able dict)."""
    con = con or duckdb.connect()
    layout, _ = read_layout(log_dir)
    tables = [t for t in ("requests", "outcomes", "attempts") if t in report.rows]
    present = {t: set(layout[t].columns) for t in tables}
    for t in tables:
        con.execute(f"CREATE OR REPLACE TEMP VIEW ingest_q_{t} AS {table_sql(log_dir, t)}")
    first, last, days = con.execute(
        f"SELECT min(event_time), max(event_time), count(DISTINCT event_time // {DAY_MS}) "
        "FROM ingest_q_requests"
    ).fetchone() or (None, None, 0)
    span_days = (last // DAY_MS - first // DAY_MS + 1) if first is not None else 0
    out_rates = con.execute(
        "SELECT avg(CAST(approved AS DOUBLE)), avg(CAST(failure_side = 'ROUTE' AS DOUBLE)) "
        "FROM ingest_q_outcomes"
    ).fetchone() or (None, None)
    return {
        "log": str(log_dir),
        "matrix": str(matrix),
        "contract": {
            "ok": report.ok,
            "seconds": round(report.seconds, 3),
            "warnings": [p.render() for p in report.warnings],
        },
        "rows": dict(report.rows),
        "span": {
            "first": _iso(first),
            "last": _iso(last),
            "days": int(span_days),
            "days_without_requests": int(span_days - days),
        },
        "approval_rate": _num(out_rates[0]),
        "route_failure_rate": _num(out_rates[1]),
        "columns": {t: _columns(con, t, present[t], report.rows[t]) for t in tables},
        "segments": _segments(con),
        "features": _matrix(con, matrix),
    }


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _val(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def render_markdown(s: dict[str, Any]) -> str:
    """The summary as a page for people."""
    span = s["span"]
    rows = ", ".join(f"{t} {n:,}" for t, n in s["rows"].items())
    lines = [
        f"# Data quality: {s['matrix']}",
        "",
        f"- log: `{s['log']}` ({rows})",
        f"- span: {span['first']} to {span['last']} ({span['days']} days, "
        f"{span['days_without_requests']} without requests)",
        f"- approval rate {_pct(s['approval_rate'])}, route failures "
        f"{_pct(s['route_failure_rate'])}",
        f"- contract: {'met' if s['contract']['ok'] else 'NOT met'} (checked in "
        f"{s['contract']['seconds']:.1f}s), {len(s['contract']['warnings'])} warnings",
    ]
    for w in s["contract"]["warnings"]:
        lines += ["", "```", w, "```"]
    lines += ["", "## Columns", ""]
    for t, cols in s["columns"].items():
        lines += [
            f"### {t}",
            "",
            "| column | in the log | nulls | min | max | mean / rate / distinct |",
            "|---|---|---|---|---|---|",
        ]
        for name, c in cols.items():
            lo = c.get("min", c.get("min_routes"))
            hi = c.get("max", c.get("max_routes"))
            mid = c.get("avg", c.get("avg_routes"))
            if "true_rate" in c:
                mid = f"true {_pct(c['true_rate'])}"
            elif "distinct_approx" in c:
                mid = f"~{c['distinct_approx']:,} distinct"
            elif name.endswith("_time"):  # epoch ms: dates say more than 1.77e+12
                lo, hi, mid = _iso(lo), _iso(hi), None
            shown = "yes" if c["present"] else "no (default)"
            lines.append(
                f"| {name} | {shown} | {_pct(c['null_rate'])} | {_val(lo)} | {_val(hi)} "
                f"| {_val(mid)} |"
            )
        lines.append("")
    lines += ["## Approval per segment", ""]
    for name, segs in s["segments"].items():
        lines += [
            f"### {name}",
            "",
            "| value | outcomes | share | approval | route failures |",
            "|---|---|---|---|---|",
        ]
        for g in segs:
            lines.append(
                f"| {g['value']} | {g['rows']:,} | {_pct(g['share'])} | "
                f"{_pct(g['approval_rate'])} | {_pct(g['route_failure_rate'])} |"
            )
        lines.append("")
    m = s["features"]
    lines += [
        "## Matrix features",
        "",
        f"{m['rows']:,} rows, label rate {_pct(m['label_rate'])}.",
        "",
        "Constant features (they teach the model nothing): "
        + (", ".join(f"`{n}`" for n in m["constant"]) or "none"),
        "",
        "| feature | nulls | zeros | min | max | mean |",
        "|---|---|---|---|---|---|",
    ]
    for n, f in m["features"].items():
        lines.append(
            f"| {n} | {_pct(f['null_rate'])} | {_pct(f['zero_rate'])} | {_val(f['min'])} "
            f"| {_val(f['max'])} | {_val(f['mean'])} |"
        )
    return "\n".join(lines) + "\n"


def write_quality(
    log_dir: Path, matrix: Path, report: IngestReport, con: duckdb.DuckDBPyConnection | None = None
) -> tuple[Path, Path]:
    """summarize, written as JSON and markdown beside the matrix; returns both paths."""
    s = summarize(log_dir, matrix, report, con)
    js, md = quality_paths(matrix)
    js.write_text(json.dumps(s, indent=1) + "\n")
    md.write_text(render_markdown(s))
    return js, md


def check_matrix(matrix: Path) -> list[Problem]:
    """What `train` checks of a matrix before fitting: the columns of this feature definition,
    a 0/1 label, and no null where a valid log cannot give one (the request's own features:
    a NaN network_code is a log that spelled its networks wrong)."""
    src = "'" + str(matrix).replace("'", "''") + "'"
    try:
        names = set(pq.read_schema(matrix).names)
    except Exception as exc:  # ArrowInvalid, OSError: not Parquet
        return [Problem("matrix", "", "unreadable", f"{matrix}: {exc}")]
    need = ("request_id", "route_id", "event_time", "approved", *FEATURE_NAMES)
    missing = [n for n in need if n not in names]
    if missing:
        return [
            Problem(
                "matrix",
                missing[0],
                "missing_column",
                f"{len(missing)} columns absent ({', '.join(missing[:5])}): not a matrix "
                f"of this feature definition",
                hint="rebuild it with `features build`",
            )
        ]
    codes = {"network_code": len(NETWORKS), "funding_code": len(FUNDING)}
    rules: list[tuple[str, str, str]] = [
        ("approved", "not 0 or 1", "approved IS NULL OR approved NOT IN (0, 1)"),
        ("event_time", "null", "event_time IS NULL"),
    ]
    rules += [
        (n, "null (a valid log gives every row a value)", f'"{n}" IS NULL')
        for n in REQUEST_FEATURES
    ]
    rules += [
        (n, f"not a code in [0, {k})", f'"{n}" < 0 OR "{n}" >= {k}') for n, k in codes.items()
    ]
    con = duckdb.connect()
    aggs = ", ".join(["count(*)"] + [f"count_if({bad})" for _, _, bad in rules])
    got = con.execute(f"SELECT {aggs} FROM {src}").fetchone() or (0,)
    rows = int(got[0])
    if not rows:
        return [Problem("matrix", "", "coverage", "no rows")]
    return [
        Problem(
            "matrix",
            col,
            "null" if "null" in what else "range",
            what,
            int(n),
            rows,
            hint="rebuild the matrix with `features build`, which checks the log",
        )
        for (col, what, _), n in zip(rules, got[1:], strict=True)
        if n
    ]

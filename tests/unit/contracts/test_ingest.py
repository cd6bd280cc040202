"""The ingest contract: it equals the Avro records, valid logs pass, and every kind of bad log is
refused with the column, the bad values and their count."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from app.contracts import vocab
from app.contracts.ingest import (
    OUTCOMES,
    REQUESTS,
    IngestReport,
    LogRejected,
    Problem,
    check_log,
    require_valid_log,
    table_sql,
)
from app.features.offline import build_matrix
from app.harness.sample import write_sample_log
from app.sim import simulate
from app.sim.scenarios import list_scenarios

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
Rows = list[dict[str, Any]]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_log(tmp_path_factory.mktemp("good"), n=400, seed=11)


def _rows(log: Path, table: str) -> Rows:
    return pq.read_table(log / f"{table}.parquet").to_pylist()


def _write(log: Path, table: str, rows: Rows, schema: pa.Schema | None = None) -> None:
    """Rows written with the original types (attempt int32, ...); a value the old type cannot
    hold (a string in the sample's all-null sca_exemption) lets pyarrow infer the types."""
    try:
        t = pa.Table.from_pylist(rows, schema=schema)
    except pa.ArrowInvalid:
        t = pa.Table.from_pylist(rows)
    pq.write_table(t, log / f"{table}.parquet")


def _variant(good: Path, tmp: Path, table: str, edit: Callable[[Rows], Rows | None]) -> Path:
    """A copy of the good log with `edit` applied to one table's rows (in place or returned)."""
    log = tmp / "log"
    shutil.copytree(good, log)
    rows = _rows(log, table)
    schema = pq.read_schema(log / f"{table}.parquet")
    _write(log, table, edit(rows) or rows, schema)
    return log


def _only(report: IngestReport, column: str, check: str) -> Problem:
    found = [p for p in report.errors if p.column == column and p.check == check]
    assert len(found) == 1, report.render()
    return found[0]


def _at(rows: Rows, idx: list[int], **change: Any) -> Rows:
    for i in idx:
        rows[i].update(change)
    return rows


# ------------------------------------------------------------------ the contract is the schema
def _avro(name: str) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = json.loads((SCHEMAS / f"{name}.avsc").read_text())["fields"]
    return fields


@pytest.mark.parametrize(
    ("fields", "record"), [(REQUESTS, "AuthorizationRequest"), (OUTCOMES, "AuthorizationOutcome")]
)
def test_the_contract_equals_the_avro_record(fields, record):
    avro = _avro(record)
    assert [f.name for f in fields] == [a["name"] for a in avro]
    kinds = {"string": "string", "int": "int", "long": "long", "boolean": "boolean"}
    for f, a in zip(fields, avro, strict=True):
        t = a["type"]
        assert f.required == ("default" not in a), f.name
        assert f.nullable == (isinstance(t, list) and "null" in t), f.name
        if f.required is False and not f.nullable:
            assert f.default == a["default"], f.name
        if isinstance(t, list):
            t = next(x for x in t if x != "null")
        if isinstance(t, dict) and t["type"] == "enum":
            assert f.kind == "enum" and list(f.values) == t["symbols"], f.name
        elif isinstance(t, dict):
            assert f.kind == "candidates" and t["type"] == "array"
            assert [x["name"] for x in t["items"]["fields"]] == [
                "route_id",
                "fee_minor",
                "acquirer_country",
            ]
        else:
            assert f.kind == kinds[t], f.name


def test_sca_exemptions_are_the_schema_doc_and_cover_the_simulator():
    doc = next(a["doc"] for a in _avro("AuthorizationRequest") if a["name"] == "sca_exemption")
    for e in vocab.SCA_EXEMPTIONS:
        assert e in doc
    from app.sim.world import EXEMPTIONS

    assert set(EXEMPTIONS) - {None} <= set(vocab.SCA_EXEMPTIONS)


# ------------------------------------------------------------------------------ good logs pass
def test_the_sample_log_meets_the_contract(good):
    report = check_log(good)
    assert report.ok, report.render()
    assert report.rows["requests"] == report.rows["outcomes"] > 400
    assert not report.warnings
    assert require_valid_log(good).ok


def test_a_log_without_retries_meets_the_contract(good, tmp_path):
    """No payment with a second attempt: the attempt-order rules have nothing to judge (their
    count was NULL, and check_log crashed on int(None))."""
    for table in ("requests", "outcomes"):
        rows = [r for r in _rows(good, table) if r["attempt"] == 1]
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{table}.parquet")
    report = check_log(tmp_path)
    assert report.ok, report.render()
    assert report.rows["requests"] == report.rows["outcomes"] == len(rows) > 0


@pytest.mark.parametrize("scenario", list_scenarios())
def test_every_simulator_scenario_writes_a_log_that_meets_the_contract(tmp_path, scenario):
    simulate(scenario, 3000, 5, tmp_path)
    report = check_log(tmp_path)
    assert report.ok, report.render()
    assert report.rows == {"requests": 3000, "outcomes": 3000, "attempts": 3000}


def test_folders_of_parts_read_like_one_file(good, tmp_path):
    log = tmp_path / "parts"
    log.mkdir()
    for table in ("requests", "outcomes"):
        t = pq.read_table(good / f"{table}.parquet")
        # Spark's layout: a folder named like the file, hive-style subfolders, a _SUCCESS marker
        d = log / (f"{table}.parquet" if table == "outcomes" else table) / "day=1"
        d.mkdir(parents=True)
        (d.parent / "_SUCCESS").write_text("")
        k = t.num_rows // 3
        for i, (a, b) in enumerate(((0, k), (k, 2 * k), (2 * k, t.num_rows))):
            pq.write_table(t.slice(a, b - a), d / f"part-{i}.parquet")
    report = check_log(log)
    assert report.ok, report.render()
    assert report.rows == check_log(good).rows
    assert build_matrix(log).df().equals(build_matrix(good).df())


def test_absent_optional_columns_take_their_defaults(good, tmp_path):
    """The sample log's recurring and sca_required are all false, its previous_* all null:
    without those columns the log is still valid and builds the same matrix."""
    log = tmp_path / "log"
    shutil.copytree(good, log)
    t = pq.read_table(log / "requests.parquet")
    pq.write_table(
        t.drop(["recurring", "sca_required", "previous_route"]), log / "requests.parquet"
    )
    assert check_log(log).ok
    assert 'CAST(false AS BOOLEAN) AS "recurring"' in table_sql(log, "requests")
    assert build_matrix(log).df().equals(build_matrix(good).df())


def test_requests_without_outcome_are_a_warning_not_an_error(good, tmp_path):
    log = _variant(good, tmp_path, "outcomes", lambda rows: rows[:-7])
    report = check_log(log)
    assert report.ok
    (w,) = report.warnings
    assert (w.table, w.column, w.check, w.count) == ("requests", "request_id", "coverage", 7)


# ------------------------------------------------------------------------- bad logs, refused
def _lower(col: str) -> Callable[[Rows], None]:
    def edit(rows: Rows) -> None:
        for r in rows:
            r[col] = r[col].lower()

    return edit


def test_lower_case_enums_are_refused_with_the_values_and_a_case_hint(good, tmp_path):
    log = tmp_path / "log"
    shutil.copytree(good, log)
    for table, col in (
        ("requests", "network"),
        ("requests", "initiator"),
        ("outcomes", "initiator"),
        ("requests", "channel"),
    ):
        rows = _rows(log, table)
        _lower(col)(rows)
        _write(log, table, rows, pq.read_schema(log / f"{table}.parquet"))
    report = check_log(log)
    assert not report.ok
    req = _rows(good, "requests")
    p = next(p for p in report.errors if (p.table, p.column) == ("requests", "network"))
    assert p.check == "enum" and p.count == len(req)
    visa = sum(r["network"] == "VISA" for r in req)
    assert ("'visa'", visa) in p.examples and "upper(network)" in p.hint
    p = next(p for p in report.errors if (p.table, p.column) == ("outcomes", "initiator"))
    assert {v for v, _ in p.examples} == {"'mit'", "'cit'"}
    assert sum(n for _, n in p.examples) == len(req)
    with pytest.raises(LogRejected) as err:
        require_valid_log(log)
    assert "requests.network [enum]" in str(err.value) and "'visa' x" in str(err.value)


BAD = [
    # (table, edit on the rows, column, check, count, an example shown)
    (
        "requests",
        lambda r: _at(r, [3, 9, 20], card_fingerprint=None),
        "card_fingerprint",
        "null",
        3,
        None,
    ),
    ("requests", lambda r: _at(r, [1, 2], bin="41x111"), "bin", "format", 2, "'41x111'"),
    ("requests", lambda r: _at(r, [5], bin="4111"), "bin", "format", 1, "'4111'"),
    ("requests", lambda r: _at(r, [0, 4, 8, 12], amount_minor=0), "amount_minor", "range", 4, "0"),
    ("requests", lambda r: _at(r, [7], currency="EURO"), "currency", "format", 1, "'EURO'"),
    ("requests", lambda r: _at(r, [7, 8], mcc="59"), "mcc", "format", 2, "'59'"),
    ("requests", lambda r: _at(r, [6], issuer_country="de"), "issuer_country", "format", 1, "'de'"),
    ("requests", lambda r: _at(r, [6], attempt=0), "attempt", "range", 1, "0"),
    ("requests", lambda r: _at(r, [2], request_id=""), "request_id", "format", 1, "''"),
    (
        "requests",
        lambda r: _at(r, [2], sca_exemption="LOWVALUE"),
        "sca_exemption",
        "enum",
        1,
        "'LOWVALUE'",
    ),
    ("requests", lambda r: _at(r, [3], candidates=[]), "candidates", "range", 1, "'0 routes'"),
    (
        "requests",
        lambda r: _at(
            r, [3], candidates=[{"route_id": "acq-eu", "fee_minor": -4, "acquirer_country": "DE"}]
        ),
        "candidates.fee_minor",
        "range",
        1,
        "-4",
    ),
    (
        "requests",
        lambda r: _at(
            r,
            [3, 4],
            candidates=[{"route_id": "acq-eu", "fee_minor": 1, "acquirer_country": "DE"}] * 2,
        ),
        "candidates.route_id",
        "duplicate",
        2,
        None,
    ),
    (
        "requests",
        lambda r: _at(
            r,
            [3],
            candidates=[{"route_id": "acq-eu", "fee_minor": 1, "acquirer_country": "Germany"}],
        ),
        "candidates.acquirer_country",
        "format",
        1,
        "'Germany'",
    ),
    ("requests", lambda r: r + r[:2], "request_id", "duplicate", 2, None),
    (
        "requests",
        lambda r: _at(r, [4], event_time=r[4]["event_time"] // 1000),
        "event_time",
        "range",
        1,
        None,
    ),
    (
        "outcomes",
        lambda r: _at(r, [0, 1], request_id="nobody"),
        "request_id",
        "orphan",
        2,
        "'nobody'",
    ),
    ("outcomes", lambda r: r + r[5:8], "request_id", "duplicate", 3, None),
    (
        "outcomes",
        lambda r: _at(r, [10], route_id="acq-xx"),
        "route_id",
        "not_a_candidate",
        1,
        "'acq-xx'",
    ),
    ("outcomes", lambda r: _at(r, [10, 11], bin="999999"), "bin", "mismatch", 2, None),
    ("outcomes", lambda r: _at(r, [4], latency_ms=-1), "latency_ms", "range", 1, "-1"),
    (
        "outcomes",
        lambda r: _at(
            r, [4], event_time=r[4]["request_time"] - 5, request_time=r[4]["request_time"]
        ),
        "event_time",
        "time_order",
        1,
        None,
    ),
    (
        "outcomes",
        lambda r: _at(r, [4], request_time=r[4]["request_time"] + 1),
        "request_time",
        "mismatch",
        1,
        None,
    ),
    (
        "outcomes",
        lambda r: [dict(o, approved=not o["approved"]) if i == 3 else o for i, o in enumerate(r)],
        "failure_side",
        "mismatch",
        1,
        None,
    ),
    (
        "outcomes",
        lambda r: _at(r, [4], failure_side="DECLINED"),
        "failure_side",
        "enum",
        1,
        "'DECLINED'",
    ),
]


@pytest.mark.parametrize(
    ("table", "edit", "column", "check", "count", "example"),
    BAD,
    ids=[f"{b[0]}.{b[2]}-{b[3]}" for b in BAD],
)
def test_a_bad_log_is_refused_naming_column_values_and_count(
    good, tmp_path, table, edit, column, check, count, example
):
    report = check_log(_variant(good, tmp_path, table, edit))
    assert not report.ok
    p = _only(report, column, check)
    assert (p.table, p.count) == (table, count), p.render()
    if example is not None:
        assert example in [v for v, _ in p.examples], p.render()
    assert f"{table}.{column} [{check}]" in report.render()


def test_a_later_attempt_before_an_earlier_one_is_refused(good, tmp_path):
    def edit(rows: Rows) -> None:
        r = next(r for r in rows if r["attempt"] == 2)
        first = next(x for x in rows if x["payment_id"] == r["payment_id"] and x["attempt"] == 1)
        r["event_time"] = first["event_time"] - 1000

    p = _only(check_log(_variant(good, tmp_path, "requests", edit)), "event_time", "time_order")
    assert p.table == "requests" and p.count == 1 and p.examples[0][0].endswith(" attempt 2'")


def test_epoch_seconds_get_a_hint(good, tmp_path):
    log = _variant(
        good,
        tmp_path,
        "outcomes",
        lambda rows: [dict(o, event_time=o["event_time"] // 1000) for o in rows],
    )
    p = _only(check_log(log), "event_time", "range")
    assert p.count == len(_rows(good, "outcomes")) and "epoch seconds" in p.hint


def test_an_outcome_initiator_left_to_its_default_is_refused_against_mit_requests(good, tmp_path):
    log = tmp_path / "log"
    shutil.copytree(good, log)
    t = pq.read_table(log / "outcomes.parquet")
    pq.write_table(t.drop(["initiator"]), log / "outcomes.parquet")
    mit = sum(r["initiator"] == "MIT" for r in _rows(good, "requests"))
    p = _only(check_log(log), "initiator", "mismatch")
    assert p.count == mit > 0 and p.examples == (("'CIT vs MIT'", mit),)
    assert "absent" in p.hint


@pytest.mark.parametrize(
    ("column", "array", "hint"),
    [
        ("event_time", lambda t: pc.cast(t, pa.timestamp("ms")), "epoch_ms"),
        ("amount_minor", lambda t: pc.cast(t, pa.float64()), "minor units"),
        ("approved", lambda t: pc.cast(t, pa.int8()), "boolean"),
    ],
)
def test_wrong_types_are_refused_with_a_conversion_hint(good, tmp_path, column, array, hint):
    log = tmp_path / "log"
    shutil.copytree(good, log)
    t = pq.read_table(log / "outcomes.parquet")
    i = t.schema.get_field_index(column)
    pq.write_table(t.set_column(i, column, array(t[column])), log / "outcomes.parquet")
    report = check_log(log)
    p = _only(report, column, "type")
    assert p.table == "outcomes" and hint in p.detail


def test_missing_columns_tables_and_broken_parts_are_refused(good, tmp_path):
    log = tmp_path / "log"
    shutil.copytree(good, log)
    pq.write_table(pq.read_table(log / "requests.parquet").drop(["bin"]), log / "requests.parquet")
    (log / "outcomes.parquet").unlink()
    report = check_log(log)
    assert {(p.table, p.column, p.check) for p in report.errors} == {
        ("requests", "bin", "missing_column"),
        ("outcomes", "", "layout"),
    }
    # a folder beside the file is ambiguous; a part that is not Parquet is unreadable
    shutil.copy(good / "outcomes.parquet", log / "outcomes.parquet")
    (log / "requests").mkdir()
    (log / "requests" / "part-0.parquet").write_bytes(b"not parquet")
    assert _only(check_log(log), "", "layout").table == "requests"
    (log / "requests.parquet").unlink()
    assert _only(check_log(log), "", "unreadable").table == "requests"


def test_parts_that_disagree_on_a_column_are_refused(good, tmp_path):
    log = tmp_path / "log"
    shutil.copytree(good, log)
    t = pq.read_table(log / "requests.parquet")
    (log / "requests.parquet").unlink()
    (log / "requests").mkdir()
    pq.write_table(t.slice(0, 100), log / "requests" / "a.parquet")
    pq.write_table(t.slice(100).drop(["three_ds"]), log / "requests" / "b.parquet")
    p = _only(check_log(log), "three_ds", "layout")
    assert "b.parquet" in p.detail


def test_attempts_are_checked_when_present(good, tmp_path):
    log = tmp_path / "log"
    shutil.copytree(good, log)
    outs = _rows(log, "outcomes")
    att = [
        {"request_id": o["request_id"], "route_id": o["route_id"], "propensity": 1 / 3}
        for o in outs
    ]
    _write(log, "attempts", att)
    assert check_log(log).ok
    att[0]["propensity"] = 0.0
    att[1]["route_id"] = "elsewhere"
    _write(log, "attempts", att)
    report = check_log(log)
    assert _only(report, "propensity", "range").examples == (("0.0", 1),)
    assert _only(report, "route_id", "mismatch").count == 1


# ------------------------------------------------------------- the README's conversion example
README = Path(__file__).resolve().parents[3] / "README.md"


def _readme_section() -> str:
    text = README.read_text()
    return text[text.index("## Bringing your own history") :].split("\n## ", 1)[0]


def test_the_readme_field_tables_are_the_contract():
    from app.contracts.ingest import markdown_tables

    assert markdown_tables() in _readme_section()


def _warehouse_export(log: Path, out: Path) -> None:
    """The sample log as a warehouse would hold it: other names, lower-case enums, timestamps,
    decimal amounts and fees, routes in their own table, the failing side as a word."""
    out.mkdir()
    con = duckdb.connect()
    con.execute(f"""
        COPY (SELECT request_id AS txn_id, payment_id AS order_id, attempt AS try_no,
                     make_timestamp(event_time * 1000) AS created_at, merchant_id AS merchant,
                     mcc, merchant_country,
                     CAST(amount_minor / 100 AS DECIMAL(12, 2)) AS amount,
                     lower(currency) AS currency, card_fingerprint AS card_token, bin,
                     lower(network) AS scheme, lower(funding) AS card_type, issuer_country,
                     lower(channel) AS channel,
                     CASE initiator WHEN 'MIT' THEN 'merchant' ELSE 'customer' END
                         AS initiated_by,
                     three_ds AS is_3ds
              FROM '{log}/requests.parquet') TO '{out}/auths.parquet' (FORMAT parquet);
        COPY (SELECT request_id AS txn_id, c.route_id AS route,
                     CAST(c.fee_minor / 100 AS DECIMAL(12, 2)) AS fee, c.acquirer_country
              FROM (SELECT request_id, unnest(candidates) AS c FROM '{log}/requests.parquet'))
             TO '{out}/auth_routes.parquet' (FORMAT parquet);
        COPY (SELECT request_id AS txn_id, make_timestamp(event_time * 1000) AS responded_at,
                     route_id AS route, response_code, CAST(advice_code AS VARCHAR)
                     AS advice_code, latency_ms,
                     CASE failure_side WHEN 'ROUTE' THEN 'acquirer'
                                       WHEN 'ISSUER' THEN 'issuer' END AS error_source
              FROM '{log}/outcomes.parquet') TO '{out}/responses.parquet' (FORMAT parquet);
    """)


def test_the_readme_conversion_of_a_warehouse_export_gives_the_same_matrix(good, tmp_path):
    section = _readme_section()
    sql = section[section.index("**Converting a warehouse export.**") :]
    sql = sql.split("```sql\n", 1)[1].split("```", 1)[0]
    export, log = tmp_path / "export", tmp_path / "mylog"
    _warehouse_export(good, export)
    assert not check_log(export).ok  # the export itself is not a log
    log.mkdir()
    duckdb.connect().execute(sql.replace("'export/", f"'{export}/").replace("'mylog/", f"'{log}/"))
    report = check_log(log)
    assert report.ok, report.render()
    assert build_matrix(log).df().equals(build_matrix(good).df())


def test_a_mistyped_column_leaves_the_other_checks_running(good, tmp_path):
    """amount_minor as a float is one error; the orphan outcome beside it is still found, and a
    log without any request_id column is reported, not a crash."""
    log = _variant(good, tmp_path, "outcomes", lambda r: _at(r, [0], request_id="nobody"))
    t = pq.read_table(log / "outcomes.parquet")
    i = t.schema.get_field_index("amount_minor")
    t = t.set_column(i, "amount_minor", pc.cast(t["amount_minor"], pa.float64()))
    pq.write_table(t, log / "outcomes.parquet")
    report = check_log(log)
    assert _only(report, "amount_minor", "type").table == "outcomes"
    assert _only(report, "request_id", "orphan").count == 1
    pq.write_table(t.drop(["request_id"]), log / "outcomes.parquet")
    report = check_log(log)
    assert _only(report, "request_id", "missing_column").table == "outcomes"
    assert report.skipped == [
        "outcomes against requests: a request_id column missing, null or not unique"
    ]


def test_an_attempt_number_past_32_bits_is_reported_not_a_crash(good, tmp_path):
    log = tmp_path / "log"
    shutil.copytree(good, log)
    t = pq.read_table(log / "requests.parquet")
    i = t.schema.get_field_index("attempt")
    big = pc.add(pc.cast(t["attempt"], pa.int64()), pa.scalar(2**31, pa.int64()))
    pq.write_table(t.set_column(i, "attempt", big), log / "requests.parquet")
    p = _only(check_log(log), "attempt", "range")
    assert p.table == "requests" and p.count == t.num_rows

"""The ingest contract: the event-log format that brings a history into authpilot, and its check.

An event log is a directory of up to three tables. Each table is one Parquet file
`<table>.parquet`, or a folder `<table>/` (or `<table>.parquet/`, as Spark writes one) of
`.parquet` parts, searched recursively (hive-style `day=.../` folders are fine, their keys are
not read; files starting with `_` or `.`, such as Spark's `_SUCCESS`, are skipped):

- requests (required): one row per authorization attempt, the AuthorizationRequest fields;
- outcomes (required): one row per answered attempt, the AuthorizationOutcome fields;
- attempts (optional): the logging policy's choice per attempt, its route and propensity.

The fields are the Avro records' (schemas/*.avsc; a unit test holds REQUESTS and OUTCOMES equal
to them): a field without an Avro default is required (present, and never null unless the
schema's type allows null); a field with a default may be absent and then takes the default on
every row. Enum spellings are app.contracts.vocab's, exactly: `visa` is not `VISA`. Columns the
contract does not name are ignored (the simulator's truth columns, a warehouse's extras).

Order: rows may come in any order, within and across parts; readers sort by event_time. What is
required is that times make sense: an outcome is not earlier than its request, its
request_time is the request's event_time, and a later attempt of a payment does not start
before an earlier one (equal milliseconds are tolerated: exports with second-resolution clocks
give cascades the same time).

`check_log` checks a log and returns an IngestReport: errors refuse the log (features build,
train --log, backfill), warnings are reported. `table_sql` is how readers select a table in the
contract's types, with the defaults filled in. A check is a few DuckDB scans and joins: 4.0-5.9 s
on the simulator's 1M-attempt log with its attempts (`python -m app.contracts.ingest var/log`,
2 cores at a load of 4), about 4 s of CPU; format rules run once per distinct value, not per
row, and the outcome-to-request join (~1.3 s) is the largest single step.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from app.contracts.validate import MAX_CANDIDATES, currencies
from app.contracts.vocab import (
    CHANNELS,
    EPOCH_MS_MAX,
    EPOCH_MS_MIN,
    FAILURE_SIDES,
    FUNDING,
    INITIATORS,
    NETWORKS,
    SCA_EXEMPTIONS,
)

# A command that refuses a log exits with this status; 2 stays argparse's usage error (and a
# --log path that does not exist), so a script can tell "fix the command" from "fix the data".
EXIT_REFUSED = 3

Kind = Literal["string", "int", "long", "boolean", "double", "enum", "candidates"]
Severity = Literal["error", "warning"]
TABLE_NAMES = ("requests", "outcomes", "attempts")
REQUIRED_TABLES = ("requests", "outcomes")

INT32_MAX = 2**31 - 1
EXAMPLES = 5  # bad values shown per problem


def _in(values: tuple[str, ...] | frozenset[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in sorted(values)) + ")"


@dataclass(frozen=True)
class Rule:
    """A domain rule: `bad` is a SQL predicate over the column `{c}` true for a wrong value
    (NULL for a null value, so nulls are left to the null check)."""

    what: str
    bad: str


RULES: dict[str, Rule] = {
    "nonempty": Rule("a non-empty string", "{c} = ''"),  # as validate.py: empty, not blank
    "bin": Rule("6 to 8 digits", "NOT regexp_full_match({c}, '[0-9]{{6,8}}')"),
    "mcc": Rule("4 digits (ISO 18245)", "NOT regexp_full_match({c}, '[0-9]{{4}}')"),
    "country": Rule(
        "an ISO 3166-1 alpha-2 code (2 upper-case letters)",
        "NOT regexp_full_match({c}, '[A-Z]{{2}}')",
    ),
    "currency": Rule("a known ISO 4217 code (app/data/currencies.json)", "{c} NOT IN {currencies}"),
    "positive": Rule("> 0", "{c} <= 0"),
    "attempt": Rule(f">= 1 (and <= {INT32_MAX})", f"{{c}} < 1 OR {{c}} > {INT32_MAX}"),
    "non_negative": Rule(f">= 0 (and <= {INT32_MAX})", f"{{c}} < 0 OR {{c}} > {INT32_MAX}"),
    "epoch_ms": Rule(
        "epoch milliseconds in [2000-01-01, 2100-01-01)",
        f"{{c}} < {EPOCH_MS_MIN} OR {{c}} >= {EPOCH_MS_MAX}",
    ),
    "probability": Rule("in (0, 1]", "NOT ({c} > 0 AND {c} <= 1)"),
}


@dataclass(frozen=True)
class Field:
    """One column of a table. `required`: present in every part (an Avro field without a
    default); otherwise it may be absent and every row takes `default`. `nullable`: nulls are
    allowed (an Avro union with null). `values`: the only spellings allowed."""

    name: str
    kind: Kind
    doc: str
    required: bool = True
    nullable: bool = False
    default: Any = None
    values: tuple[str, ...] = ()
    rule: str | None = None


def _f(name: str, kind: Kind, doc: str, **kw: Any) -> Field:
    return Field(name, kind, doc, **kw)


REQUESTS: tuple[Field, ...] = (
    _f("request_id", "string", "unique id of the attempt", rule="nonempty"),
    _f("payment_id", "string", "id shared by every attempt of one payment", rule="nonempty"),
    _f("attempt", "int", "1 for the first attempt of the payment, 2.. for retries", rule="attempt"),
    _f("event_time", "long", "when the gateway sent the request (UTC)", rule="epoch_ms"),
    _f("merchant_id", "string", "card acceptor id", rule="nonempty"),
    _f("mcc", "string", "merchant category code", rule="mcc"),
    _f("merchant_country", "string", "country of the merchant", rule="country"),
    _f("amount_minor", "long", "amount in the currency's minor units (cents)", rule="positive"),
    _f("currency", "string", "currency of the amount", rule="currency"),
    _f("card_fingerprint", "string", "stable card identifier, never a PAN", rule="nonempty"),
    _f("bin", "string", "first 6 to 8 digits of the card number", rule="bin"),
    _f("network", "enum", "card scheme", values=NETWORKS),
    _f("funding", "enum", "funding type of the card", values=FUNDING),
    _f("issuer_country", "string", "country of the issuing bank", rule="country"),
    _f("channel", "enum", "how the card was presented (all but POS: card-not-present)",
       values=CHANNELS),
    _f("initiator", "enum", "customer- or merchant-initiated", values=INITIATORS),
    _f("recurring", "boolean", "part of a recurring series", required=False, default=False),
    _f("sca_required", "boolean", "PSD2 strong customer authentication applies",
       required=False, default=False),
    _f("three_ds", "boolean", "the request carries 3-D Secure", required=False, default=False),
    _f("sca_exemption", "string", "exemption claimed, or null", required=False, nullable=True,
       values=SCA_EXEMPTIONS),
    _f("candidates", "candidates", "routes this attempt may take: struct(route_id string, "
       "fee_minor long, acquirer_country string, optional, may be null)"),
    _f("previous_route", "string", "route of the previous attempt of the payment, or null",
       required=False, nullable=True),
    _f("previous_response_code", "string", "code that declined the previous attempt, or null",
       required=False, nullable=True),
)  # fmt: skip

OUTCOMES: tuple[Field, ...] = (
    _f("request_id", "string", "the attempt answered (a request_id of requests)", rule="nonempty"),
    _f("payment_id", "string", "as in the request", rule="nonempty"),
    _f("attempt", "int", "as in the request", rule="attempt"),
    _f("event_time", "long", "when the response arrived (UTC)", rule="epoch_ms"),
    _f("request_time", "long", "event_time of the request answered", rule="epoch_ms"),
    _f("card_fingerprint", "string", "as in the request", rule="nonempty"),
    _f("bin", "string", "as in the request", rule="bin"),
    _f("network", "enum", "as in the request", values=NETWORKS),
    _f("issuer_country", "string", "as in the request", rule="country"),
    _f("merchant_id", "string", "as in the request", rule="nonempty"),
    _f("amount_minor", "long", "as in the request", rule="positive"),
    _f("currency", "string", "as in the request", rule="currency"),
    _f("initiator", "enum", "as in the request", required=False, default="CIT",
       values=INITIATORS),
    _f("route_id", "string", "the route taken (one of the request's candidates)",
       rule="nonempty"),
    _f("approved", "boolean", "the issuer approved"),
    _f("response_code", "string", "ISO 8583 code as the network sent it (00, 05, 51, ...)",
       rule="nonempty"),
    _f("advice_code", "string", "Mastercard merchant advice code, or null", required=False,
       nullable=True),
    _f("latency_ms", "int", "route round-trip time, ms", rule="non_negative"),
    _f("failure_side", "enum", "NONE when approved, ROUTE for technical failures, ISSUER for "
       "issuer declines", values=FAILURE_SIDES),
    _f("three_ds", "boolean", "as in the request", required=False, default=False),
)  # fmt: skip

# No Avro record: the logging policy's side of each attempt, what off-policy estimates need.
ATTEMPTS: tuple[Field, ...] = (
    _f("request_id", "string", "the attempt (a request_id of requests)", rule="nonempty"),
    _f("route_id", "string", "the route the logging policy chose (the outcome's route_id)",
       rule="nonempty"),
    _f("propensity", "double", "probability with which that route was chosen",
       rule="probability"),
    _f("policy", "string", "name of the logging policy", required=False, nullable=True),
)  # fmt: skip

TABLES: dict[str, tuple[Field, ...]] = {
    "requests": REQUESTS,
    "outcomes": OUTCOMES,
    "attempts": ATTEMPTS,
}

# Outcome columns that repeat the request's value; features key outcomes by them, so a
# difference would silently file an outcome under another card, merchant or BIN.
COPIED = (
    "payment_id",
    "attempt",
    "card_fingerprint",
    "bin",
    "network",
    "issuer_country",
    "merchant_id",
    "amount_minor",
    "currency",
    "initiator",
    "three_ds",
)

_SQL_TYPE = {
    "string": "VARCHAR",
    "enum": "VARCHAR",
    "int": "BIGINT",  # not INTEGER: a value past 2^31 is reported by its rule, not a cast error
    "long": "BIGINT",
    "boolean": "BOOLEAN",
    "double": "DOUBLE",
    "candidates": "STRUCT(route_id VARCHAR, fee_minor BIGINT, acquirer_country VARCHAR)[]",
}


# ------------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class Problem:
    """One broken rule: where (table.column), what the contract wants, how many rows (or ids)
    break it, and the most frequent bad values with their counts."""

    table: str
    column: str
    check: str  # layout | unreadable | missing_column | type | null | enum | format | range |
    #             duplicate | orphan | time_order | mismatch | not_a_candidate | coverage
    detail: str
    count: int = 0
    rows: int = 0
    examples: tuple[tuple[str, int], ...] = ()
    distinct: int = 0
    hint: str = ""
    severity: Severity = "error"

    def render(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        head = f"{self.severity:7s} {where} [{self.check}]: {self.detail}"
        if self.count:
            of = f" of {self.rows:,}" if self.rows else ""
            head += f": {self.count:,}{of}"
        lines = [head]
        if self.examples:
            shown = ", ".join(f"{v} x{n:,}" for v, n in self.examples)
            more = self.distinct - len(self.examples)
            lines.append(
                f"          top: {shown}" + (f" (+{more:,} more values)" if more > 0 else "")
            )
        if self.hint:
            lines.append(f"          fix: {self.hint}")
        return "\n".join(lines)


@dataclass
class IngestReport:
    """The result of check_log: rows per table, problems (errors refuse the log), checks that
    could not run because of an earlier error, and the time the check took."""

    log_dir: Path
    rows: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary_line(self) -> str:
        rows = ", ".join(f"{t} {n:,}" for t, n in self.rows.items())
        verdict = "meets the event-log contract" if self.ok else "does not meet the contract"
        return (
            f"{self.log_dir} {verdict} ({len(self.errors)} errors, "
            f"{len(self.warnings)} warnings; {rows}; checked in {self.seconds:.1f}s)"
        )

    def render(self) -> str:
        lines = [self.summary_line()]
        lines += [p.render() for p in self.errors + self.warnings]
        lines += [f"skipped {s}" for s in self.skipped]
        if not self.ok:
            lines.append("the format: README.md, section 'Bringing your own history'")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "log_dir": str(self.log_dir),
            "ok": self.ok,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "problems": [asdict(p) for p in self.problems],
            "skipped": self.skipped,
        }


class LogRejected(ValueError):
    """A log with contract errors; `report` says which. Commands exit with EXIT_REFUSED."""

    def __init__(self, report: IngestReport) -> None:
        super().__init__(report.render())
        self.report = report


# ------------------------------------------------------------------------------- the layout
@dataclass
class Table:
    """One table of a log: its parts and, per contract column present, its Arrow type."""

    name: str
    parts: list[Path]
    columns: dict[str, pa.DataType]


def _parts(log_dir: Path, name: str) -> tuple[list[Path], str | None]:
    """The Parquet files of a table, or an error text when the layout is ambiguous."""
    single = log_dir / f"{name}.parquet"
    folders = [d for d in (log_dir / name, single) if d.is_dir()]
    if single.is_file() and folders:
        return [], f"both {single.name} and {folders[0].name}/ exist: keep one"
    if len(folders) > 1:
        return [], f"both {name}/ and {name}.parquet/ exist: keep one"
    if single.is_file():
        return [single], None
    if folders:
        parts = sorted(
            p
            for p in folders[0].rglob("*.parquet")
            if p.is_file()
            and not any(s.startswith(("_", ".")) for s in p.relative_to(folders[0]).parts)
        )
        if not parts:
            return [], f"{folders[0].name}/ holds no .parquet parts"
        return parts, None
    return [], None


def _type_problem(f: Field, t: pa.DataType) -> str | None:
    """Why the Arrow type `t` cannot hold field `f` (None when it can)."""
    if pa.types.is_null(t):  # an all-null column: the null check decides
        return None
    if pa.types.is_dictionary(t):
        t = t.value_type
    text = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if f.kind in ("string", "enum"):
        return None if text else f"is {t}, the contract wants a string"
    if f.kind in ("int", "long"):
        if pa.types.is_integer(t):
            return None
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            return (
                f"is {t}, the contract wants epoch milliseconds as an integer "
                f"(DuckDB: epoch_ms({f.name}); pandas: .dt.as_unit('ms').astype('int64'))"
            )
        if f.name == "amount_minor" and (pa.types.is_floating(t) or pa.types.is_decimal(t)):
            return (
                f"is {t}, the contract wants integer minor units "
                "(e.g. CAST(round(amount * 100) AS BIGINT) for a 2-decimal currency)"
            )
        return f"is {t}, the contract wants an integer"
    if f.kind == "boolean":
        return None if pa.types.is_boolean(t) else f"is {t}, the contract wants a boolean"
    if f.kind == "double":
        return None if pa.types.is_floating(t) else f"is {t}, the contract wants a float"
    # candidates: list<struct<route_id: string, fee_minor: integer[, acquirer_country: string]>>
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(
        t.value_type
    ):
        return f"is {t}, the contract wants a list of struct(route_id, fee_minor, acquirer_country)"
    st = t.value_type
    names = [st.field(i).name for i in range(st.num_fields)]
    want = {"route_id": "string", "fee_minor": "int", "acquirer_country": "string"}
    for name, kind in want.items():
        if name not in names:
            if name == "acquirer_country":
                continue  # optional: null for every route
            return f"is {t}: the struct lacks {name}"
        sub = _type_problem(Field(name, kind, ""), st.field(name).type)  # type: ignore[arg-type]
        if sub:
            return f"struct field {name} {sub}"
    return None


def read_layout(log_dir: Path) -> tuple[dict[str, Table], list[Problem]]:
    """The tables of a log with their parts and contract columns, and the layout and type
    problems found on the way (missing tables, unreadable parts, missing or mistyped columns,
    parts that disagree). Reads Parquet footers only."""
    tables: dict[str, Table] = {}
    problems: list[Problem] = []
    for name in TABLE_NAMES:
        parts, err = _parts(log_dir, name)
        if err:
            problems.append(Problem(name, "", "layout", err))
            continue
        if not parts:
            if name in REQUIRED_TABLES:
                problems.append(
                    Problem(
                        name,
                        "",
                        "layout",
                        f"not found: {name}.parquet, or {name}/ with .parquet parts",
                    )
                )
            continue
        schemas: dict[Path, pa.Schema] = {}
        for p in parts:
            try:
                schemas[p] = pq.read_schema(p)
            except Exception as exc:  # ArrowInvalid, OSError, ...: not Parquet or truncated
                problems.append(Problem(name, "", "unreadable", f"{p}: {exc}"))
        if len(schemas) < len(parts):
            continue
        columns: dict[str, pa.DataType] = {}
        for f in TABLES[name]:
            have = [p for p in parts if f.name in schemas[p].names]
            if not have:
                if f.required:
                    problems.append(
                        Problem(
                            name,
                            f.name,
                            "missing_column",
                            f"required column absent ({f.kind}: {f.doc})",
                        )
                    )
                continue
            if len(have) < len(parts):
                lack = [p.name for p in parts if p not in have]
                problems.append(
                    Problem(
                        name,
                        f.name,
                        "layout",
                        f"in {len(have)} of {len(parts)} parts; absent from {', '.join(lack[:3])}",
                    )
                )
                continue
            bad = [
                (p, why) for p in parts if (why := _type_problem(f, schemas[p].field(f.name).type))
            ]
            if bad:
                p, why = bad[0]
                where = (
                    f" (in {len(bad)} of {len(parts)} parts, e.g. {p.name})"
                    if len(parts) > 1
                    else ""
                )
                problems.append(Problem(name, f.name, "type", f"{why}{where}"))
                continue
            columns[f.name] = schemas[parts[0]].field(f.name).type
        tables[name] = Table(name, parts, columns)
    return tables, problems


# --------------------------------------------------------------------------- reading a table
def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _source(parts: list[Path]) -> str:
    files = ", ".join(_sql_str(str(p)) for p in parts)
    return f"read_parquet([{files}], union_by_name = true)"


_EXACT_CANDIDATES = pa.list_(
    pa.struct(
        [("route_id", pa.string()), ("fee_minor", pa.int64()), ("acquirer_country", pa.string())]
    )
)


def _column_sql(f: Field, t: pa.DataType | None) -> str:
    q = f'"{f.name}"'
    if t is None:  # absent optional column: its default on every row
        lit = (
            "NULL"
            if f.default is None
            else (
                str(f.default).lower() if isinstance(f.default, bool) else _sql_str(str(f.default))
            )
        )
        return f"CAST({lit} AS {_SQL_TYPE[f.kind]}) AS {q}"
    if f.kind != "candidates":
        return f"CAST({q} AS {_SQL_TYPE[f.kind]}) AS {q}"
    if t.equals(_EXACT_CANDIDATES):
        return q
    st = t.value_type
    acq = "c.acquirer_country" if st.get_field_index("acquirer_country") >= 0 else "NULL"
    return (
        f"list_transform({q}, lambda c: {{'route_id': CAST(c.route_id AS VARCHAR), "
        f"'fee_minor': CAST(c.fee_minor AS BIGINT), "
        f"'acquirer_country': CAST({acq} AS VARCHAR)}}) AS {q}"
    )


def _select(table: Table) -> str:
    cols = []
    for f in TABLES[table.name]:
        t = table.columns.get(f.name)
        if t is not None or not f.required:
            cols.append(_column_sql(f, t))
    return f"SELECT {', '.join(cols)} FROM {_source(table.parts)}"


def table_sql(log_dir: Path, name: str) -> str:
    """A SELECT of one table in the contract's columns and types, defaults filled in: what
    readers (features build, backfill) query. Raises LogRejected when the table cannot be read
    that way (run check_log first for the full report)."""
    tables, problems = read_layout(log_dir)
    mine = [p for p in problems if p.table == name]
    if mine or name not in tables:
        report = IngestReport(log_dir, problems=mine or [Problem(name, "", "layout", "not found")])
        raise LogRejected(report)
    return _select(tables[name])


# ------------------------------------------------------------------------------- the checks
@dataclass(frozen=True)
class _Check:
    """A rule over one relation: `bad` marks a wrong row and `example` is what the report
    shows of it (grouped and counted). With `key`, both are written over `k`, the key's value,
    and the rule is judged once per distinct key: a regular expression over the few hundred
    BINs of a log instead of over every row (a 1M-row log has ~500 BINs, 30 currencies)."""

    table: str
    column: str
    check: str
    detail: str
    bad: str
    example: str | None
    hint: str = ""
    severity: Severity = "error"
    key: str | None = None


def _field_checks(name: str, cols: set[str], absent: set[str]) -> list[_Check]:
    out: list[_Check] = []
    rid = "request_id" if "request_id" in cols else None
    for f in TABLES[name]:
        if f.name not in cols:
            continue
        c = f'"{f.name}"'
        if not f.nullable and f.name not in absent:
            out.append(
                _Check(
                    name,
                    f.name,
                    "null",
                    "null in a required field",
                    f"{c} IS NULL",
                    None if f.name == "request_id" else rid,
                )
            )
        if f.values:
            out.append(
                _Check(
                    name,
                    f.name,
                    "enum",
                    "not one of " + ", ".join(f.values),
                    f"k NOT IN {_in(f.values)}",
                    "k",
                    key=c,
                )
            )
        if f.rule:
            rule = RULES[f.rule]
            kind = "range" if f.kind in ("int", "long", "double") else "format"
            # ids are unique per row: grouping them would cost more than the test itself
            keyed = kind == "format" and f.rule != "nonempty"
            bad = rule.bad.format(c="k" if keyed else c, currencies=_in(currencies()))
            out.append(
                _Check(
                    name,
                    f.name,
                    kind,
                    f"not {rule.what}",
                    bad,
                    "k" if keyed else c,
                    key=c if keyed else None,
                )
            )
    if name == "requests" and "candidates" in cols:
        cand = '"candidates"'
        ids = f"list_transform({cand}, lambda c: c.route_id)"
        acq = f"list_transform({cand}, lambda c: c.acquirer_country)"
        bad_fee = f"list_filter({cand}, lambda c: c.fee_minor IS NULL OR c.fee_minor < 0)"
        bad_acq = "list_filter(k, lambda a: NOT regexp_full_match(a, '[A-Z]{2}'))"
        out += [
            _Check(
                name,
                "candidates",
                "range",
                f"not 1 to {MAX_CANDIDATES} routes",
                f"len({cand}) = 0 OR len({cand}) > {MAX_CANDIDATES}",
                f"CAST(len({cand}) AS VARCHAR) || ' routes'",
            ),
            _Check(
                name,
                "candidates.route_id",
                "null",
                "a candidate without a route id",
                "len(list_filter(k, lambda r: r IS NULL OR r = '')) > 0",
                "k",
                key=ids,
            ),
            _Check(
                name,
                "candidates.route_id",
                "duplicate",
                "a route listed twice",
                "len(list_distinct(k)) < len(list_filter(k, lambda r: r IS NOT NULL))",
                "k",
                key=ids,
            ),
            _Check(
                name,
                "candidates.fee_minor",
                "range",
                "null or negative fee",
                f"len({bad_fee}) > 0",
                f"{bad_fee}[1].fee_minor",
            ),
            _Check(
                name,
                "candidates.acquirer_country",
                "format",
                "not " + RULES["country"].what,
                f"len({bad_acq}) > 0",
                f"{bad_acq}[1]",
                key=acq,
            ),
        ]
    if name == "outcomes" and {"approved", "failure_side"} <= cols:
        out.append(
            _Check(
                name,
                "failure_side",
                "mismatch",
                "approved rows must have NONE, declined rows ROUTE or ISSUER",
                f"approved <> (failure_side = 'NONE') AND failure_side IN {_in(FAILURE_SIDES)}",
                "'approved=' || approved || ', failure_side=' || failure_side",
            )
        )
    return out


def _join_checks(absent_out: set[str], cols_o: set[str], cols_r: set[str]) -> list[_Check]:
    """Outcomes against the request they answer (relation `o LEFT JOIN r`, r carrying the
    candidates' route ids as `ids`)."""
    t = "outcomes"
    on = "r.request_id IS NOT NULL AND "  # the rest judge answered outcomes only
    out = [
        _Check(
            t,
            "request_id",
            "orphan",
            "an outcome answering no request",
            "r.request_id IS NULL",
            "o.request_id",
            hint="every outcome's request_id must be a request of the log",
        ),
        _Check(
            t,
            "event_time",
            "time_order",
            "an outcome earlier than its request",
            on + "o.event_time < r.event_time",
            "o.request_id || ' (' || (r.event_time - o.event_time) || ' ms early)'",
            hint="both times are UTC epoch ms; a shift of whole hours is a time zone",
        ),
        _Check(
            t,
            "request_time",
            "mismatch",
            "not the request's event_time (outcome vs request)",
            on + "o.request_time <> r.event_time",
            "o.request_time || ' vs ' || r.event_time",
        ),
        _Check(
            t,
            "route_id",
            "not_a_candidate",
            "a route not among the request's candidates",
            on + "NOT list_contains(r.ids, o.route_id)",
            "o.route_id",
        ),
    ]
    for c in COPIED:
        if c not in cols_o or c not in cols_r:
            continue
        hint = (
            f"the column is absent, so every outcome takes the default "
            f"{next(f.default for f in OUTCOMES if f.name == c)!r}: add the request's value"
            if c in absent_out
            else "outcomes repeat the request's value"
        )
        out.append(
            _Check(
                t,
                c,
                "mismatch",
                "differs from the request's (outcome vs request)",
                f"{on}o.{c} IS DISTINCT FROM r.{c}",
                f"coalesce(CAST(o.{c} AS VARCHAR), 'null') || ' vs ' || "
                f"coalesce(CAST(r.{c} AS VARCHAR), 'null')",
                hint,
            )
        )
    return out


def _fmt(v: Any) -> str:
    return "null" if v is None else repr(v) if isinstance(v, str) else str(v)


class _Checker:
    def __init__(self, con: duckdb.DuckDBPyConnection, report: IngestReport) -> None:
        self.con = con
        self.report = report
        self._keys = 0

    def run(self, relation: str, rows: int, checks: list[_Check]) -> list[_Check]:
        """Row rules in one aggregate pass over `relation`, keyed rules once per distinct key,
        then the examples of each failed rule; returns the failed rules."""
        row = [c for c in checks if c.key is None]
        counts: dict[int, int] = {}
        if row:
            aggs = ", ".join(f"count_if({c.bad})" for c in row)
            got = self.con.execute(f"SELECT {aggs} FROM {relation}").fetchone() or ()
            # count_if of a rule whose predicate is NULL on every row (no payment has a second
            # attempt, say) is NULL in DuckDB 2.0.1, not 0: a log without retries crashed here
            counts.update({id(c): int(n or 0) for c, n in zip(row, got, strict=True)})
        sources = {id(c): relation for c in row}
        for key in dict.fromkeys(c.key for c in checks if c.key is not None):
            self._keys += 1
            g = f"ingest_keys_{self._keys}"
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {g} AS SELECT {key} AS k, "
                f"count(*) AS n FROM {relation} GROUP BY 1"
            )
            mine = [c for c in checks if c.key == key]
            aggs = ", ".join(f"coalesce(sum(n) FILTER (WHERE {c.bad}), 0)" for c in mine)
            got = self.con.execute(f"SELECT {aggs} FROM {g}").fetchone() or ()
            counts.update({id(c): int(n) for c, n in zip(mine, got, strict=True)})
            sources.update({id(c): g for c in mine})
        failed = []
        for c in checks:
            n = counts[id(c)]
            if not n:
                continue
            failed.append(c)
            examples: tuple[tuple[str, int], ...] = ()
            distinct = 0
            if c.example:
                weight = "count(*)" if c.key is None else "sum(n)"
                top = self.con.execute(
                    f"""WITH g AS (SELECT {c.example} AS v, {weight} AS n FROM {sources[id(c)]}
                                   WHERE {c.bad} GROUP BY 1)
                        SELECT v, n, count(*) OVER () FROM g
                        ORDER BY n DESC, v NULLS LAST LIMIT {EXAMPLES}"""
                ).fetchall()
                examples = tuple((_fmt(v), int(k)) for v, k, _ in top)
                distinct = int(top[0][2]) if top else 0
            hint = c.hint or _hint(c, [v for v, _ in examples])
            self.report.problems.append(
                Problem(
                    c.table,
                    c.column,
                    c.check,
                    c.detail,
                    n,
                    rows,
                    examples,
                    distinct,
                    hint,
                    c.severity,
                )
            )
        return failed

    def duplicates(self, table: str, relation: str, keys: tuple[str, ...], rows: int) -> int:
        """Report keys that appear more than once; returns the extra rows (0: unique)."""
        key = " || '/' || ".join(f"CAST({k} AS VARCHAR)" for k in keys)
        got = self.con.execute(
            f"""WITH g AS (SELECT {key} AS v, count(*) AS n FROM {relation}
                           WHERE {" AND ".join(f"{k} IS NOT NULL" for k in keys)}
                           GROUP BY 1 HAVING count(*) > 1)
                SELECT v, n, count(*) OVER (), sum(n) OVER () FROM g
                ORDER BY n DESC, v LIMIT {EXAMPLES}"""
        ).fetchall()
        if not got:
            return 0
        ids, extra = int(got[0][2]), int(got[0][3]) - int(got[0][2])
        what = "request_id" if keys == ("request_id",) else "(" + ", ".join(keys) + ")"
        self.report.problems.append(
            Problem(
                table,
                "/".join(keys),
                "duplicate",
                f"{what} appears more than once ({extra:,} extra rows)",
                ids,
                rows,
                tuple((_fmt(v), int(n)) for v, n, _, _ in got),
                ids,
                "keep one row per id (Kafka delivers at least once: dedupe by request_id)"
                if keys == ("request_id",)
                else "one request per attempt number of a payment",
            )
        )
        return extra


def _hint(c: _Check, values: list[str]) -> str:
    if c.check == "enum":
        allowed = next(f.values for f in TABLES[c.table] if f.name == c.column)
        raw = [v.strip("'") for v in values if v != "null"]
        if raw and all(v.upper() in allowed for v in raw):
            return f"the values differ from the contract only in case: upper({c.column})"
        return f"map them to {', '.join(allowed)} (CASE ... END in the export)"
    if c.column in ("event_time", "request_time") and c.check == "range":
        nums = [int(v) for v in values if v.lstrip("-").isdigit()]
        if nums and max(nums) < EPOCH_MS_MIN // 100:
            return f"these look like epoch seconds: {c.column} * 1000"
        if nums and min(nums) >= EPOCH_MS_MAX:
            return f"these look like epoch microseconds: {c.column} // 1000"
    if c.column == "bin" and c.check == "format":
        return "the first 6-8 digits of the PAN as text, leading zeros kept (never the full PAN)"
    return ""


# Attempts of one payment in attempt order (relation over requests).
_PAYMENT_ORDER = """(SELECT payment_id || ' attempt ' || attempt AS id, event_time, attempt,
                            lag(event_time) OVER w AS before,
                            min(attempt) OVER (PARTITION BY payment_id) AS first
                     FROM ingest_requests
                     WINDOW w AS (PARTITION BY payment_id ORDER BY attempt))"""
_PAYMENT_CHECKS = [
    _Check("requests", "event_time", "time_order",
           "an attempt earlier than the previous attempt of its payment",
           "event_time < before", "id"),
    _Check("requests", "attempt", "coverage",
           "payments whose first logged attempt is not 1 (cut by the export window?)",
           "attempt = first AND first > 1", "CAST(first AS VARCHAR)", severity="warning"),
]  # fmt: skip
_OUTCOME_JOIN = """ingest_outcomes o LEFT JOIN (
                       SELECT *, list_transform(candidates, lambda c: c.route_id) AS ids
                       FROM ingest_requests) r USING (request_id)"""
_ATTEMPT_JOIN = """ingest_attempts a LEFT JOIN ingest_requests r USING (request_id)
                   LEFT JOIN ingest_outcomes o USING (request_id)"""
_ATTEMPT_CHECKS = [
    _Check("attempts", "request_id", "orphan", "an attempt of no request",
           "r.request_id IS NULL", "a.request_id"),
    _Check("attempts", "route_id", "mismatch", "not the outcome's route_id (attempt vs outcome)",
           "o.request_id IS NOT NULL AND a.route_id <> o.route_id",
           "a.route_id || ' vs ' || o.route_id"),
]  # fmt: skip


def check_log(log_dir: Path, con: duckdb.DuckDBPyConnection | None = None) -> IngestReport:
    """Check an event log against the contract: layout, column types, nulls in required fields,
    enum spellings, formats and ranges, duplicate ids, outcomes without a request or on a
    route the request did not offer, copies that differ from the request, time order.
    Errors refuse the log; requests without an outcome and payments whose first logged attempt
    is not 1 are warnings (a log cut by a time window has both). A check that needs a column
    the log lacks or mistypes is not run (that column's own error says why)."""
    t0 = time.perf_counter()
    report = IngestReport(Path(log_dir))
    tables, problems = read_layout(report.log_dir)
    report.problems += problems
    con = con or duckdb.connect()
    ck = _Checker(con, report)
    cols: dict[str, set[str]] = {}  # per table: the columns of its view, present or defaulted
    keyed: set[str] = set()  # tables whose request_id is present and never null
    for name, table in tables.items():
        con.execute(f"CREATE OR REPLACE TEMP VIEW ingest_{name} AS {_select(table)}")
        (n,) = con.execute(f"SELECT count(*) FROM ingest_{name}").fetchone() or (0,)
        report.rows[name] = int(n)
        present = set(table.columns)
        absent = {f.name for f in TABLES[name] if not f.required and f.name not in present}
        cols[name] = present | absent
        failed = ck.run(f"ingest_{name}", int(n), _field_checks(name, present, absent))
        if "request_id" in present and not any(
            (c.column, c.check) == ("request_id", "null") for c in failed
        ):
            keyed.add(name)

    def has(table: str, *columns: str) -> bool:
        return table in cols and set(columns) <= cols[table]

    rows = report.rows
    extra = {t: ck.duplicates(t, f"ingest_{t}", ("request_id",), rows[t]) for t in keyed}
    if has("requests", "payment_id", "attempt", "event_time"):
        ck.duplicates("requests", "ingest_requests", ("payment_id", "attempt"), rows["requests"])
        ck.run(_PAYMENT_ORDER, rows["requests"], _PAYMENT_CHECKS)
    # Outcomes against their requests: only with unique requests (a duplicate would multiply
    # the join); duplicate outcomes are merely counted twice.
    if {"requests", "outcomes"} <= set(cols):
        if not {"requests", "outcomes"} <= keyed or extra["requests"]:
            report.skipped.append(
                "outcomes against requests: a request_id column missing, null or not unique"
            )
        elif not (has("outcomes", "event_time", "request_time", "route_id")
                  and has("requests", "event_time", "candidates")):  # fmt: skip
            report.skipped.append("outcomes against requests: columns missing or mistyped")
        else:
            absent_o = cols["outcomes"] - set(tables["outcomes"].columns)
            checks = _join_checks(absent_o, cols["outcomes"], cols["requests"])
            failed = ck.run(_OUTCOME_JOIN, rows["outcomes"], checks)
            _unanswered(ck, bool(failed) or bool(extra["outcomes"]))
    attempts_joinable = {"requests", "outcomes", "attempts"} <= keyed and not any(extra.values())
    if attempts_joinable and has("attempts", "route_id") and has("outcomes", "route_id"):
        ck.run(_ATTEMPT_JOIN, rows["attempts"], _ATTEMPT_CHECKS)
    report.seconds = time.perf_counter() - t0
    return report


def _unanswered(ck: _Checker, suspect: bool) -> None:
    """The warning for requests without an outcome. Counted by an anti join only when the
    counts cannot settle it: unique outcomes that all answer a request, as many as the
    requests, leave none unanswered."""
    rows = ck.report.rows
    if not suspect and rows["requests"] <= rows["outcomes"]:
        return
    (n,) = ck.con.execute(
        "SELECT count(*) FROM ingest_requests ANTI JOIN ingest_outcomes USING (request_id)"
    ).fetchone() or (0,)
    if n:
        ck.report.problems.append(
            Problem("requests", "request_id", "coverage", "requests without an outcome (not "
                    "answered, or answered after the export): they make no training row",
                    int(n), rows["requests"], severity="warning")
        )  # fmt: skip


def require_valid_log(log_dir: Path, con: duckdb.DuckDBPyConnection | None = None) -> IngestReport:
    """check_log, raising LogRejected when the log has errors: the one gate before any command
    computes from a log (features build, train --log, backfill)."""
    report = check_log(log_dir, con)
    if not report.ok:
        raise LogRejected(report)
    return report


def _presence(f: Field) -> str:
    if f.required:
        return "required, may be null" if f.nullable else "required"
    if f.nullable:
        return "optional, may be null (absent: null)"
    default = str(f.default).lower() if isinstance(f.default, bool) else f.default
    return f"optional (absent: {default})"


def _allowed(f: Field) -> str:
    if f.kind == "candidates":
        return (f"1 to {MAX_CANDIDATES} routes, route_id non-empty and unique, fee_minor >= 0 "
                "(minor units of the request's currency), acquirer_country alpha-2")  # fmt: skip
    if f.values:
        return ", ".join(f"`{v}`" for v in f.values)
    return RULES[f.rule].what if f.rule else ""


def markdown_tables() -> str:
    """The field tables of the README's event-log section, generated from the contract (a test
    holds the README equal to this)."""
    kind = {"candidates": "list of struct"}
    out = []
    for name in TABLE_NAMES:
        out += [f"`{name}`:", "", "| field | type | presence | values | meaning |",
                "|---|---|---|---|---|"]  # fmt: skip
        for f in TABLES[name]:
            out.append(f"| `{f.name}` | {kind.get(f.kind, f.kind)} | {_presence(f)} | "
                       f"{_allowed(f)} | {f.doc} |")  # fmt: skip
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """`python -m app.contracts.ingest LOG_DIR [--json]`: check a log, print the report
    (exit 3 when it fails); `--markdown` prints the field tables instead."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--markdown"]:
        print(markdown_tables(), end="")
        return 0
    if not args:
        print(
            "usage: python -m app.contracts.ingest LOG_DIR [--json] | --markdown", file=sys.stderr
        )
        return 2
    report = check_log(Path(args[0]))
    print(json.dumps(report.to_dict(), indent=1) if "--json" in args else report.render())
    return 0 if report.ok else EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())

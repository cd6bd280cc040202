"""The verifier's arithmetic: pure functions over what the topics held (no Kafka here).

Inputs are the decoded records read back from every topic and the ledger of what the suite
injected; outputs are counts the report prints and the targets of issue 15 are checked
against. Definitions, once:
- lost: a valid request (not injected as malformed, not intentionally skipped) with no decision;
  an offset gap is a lost request with a decided request after it on the same partition (the
  consumer skipped it), the tail is lost requests after the last decided one (not reached);
- duplicates: decisions beyond the first per request_id; a duplicate disagrees when any field
  but decided_at and decision_latency_us differs from the first decision's;
- retries: exactly one RetryDecision per declined valid outcome (deduplicated by request_id);
- dead letters: matched to injected messages by (source topic, partition, offset);
- commits: a partition is stuck when the group's committed offset is behind its end.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.chaos.kafka_io import Header, Msg, Sent

VOLATILE = frozenset({"decided_at", "decision_latency_us"})  # may differ between duplicates


@dataclass(frozen=True)
class RequestRef:
    partition: int
    offset: int
    request_id: str


@dataclass
class DecisionCheck:
    requests: int = 0
    decided: int = 0
    lost: int = 0
    gaps: dict[int, list[int]] = field(default_factory=dict)  # partition -> skipped offsets
    tail: dict[int, int] = field(default_factory=dict)  # partition -> undecided after last
    decisions: int = 0
    duplicates: int = 0
    duplicate_ids: int = 0
    disagreeing_ids: int = 0
    route_disagreeing_ids: int = 0
    differing_fields: dict[str, int] = field(default_factory=dict)
    max_copies: int = 0
    decided_forbidden: int = 0  # decisions for ids of injected malformed requests
    unknown: int = 0  # decisions for ids on no request of the topic

    @property
    def gap_count(self) -> int:
        return sum(len(v) for v in self.gaps.values())

    @property
    def duplicate_pct(self) -> float:
        return 100.0 * self.duplicates / self.requests if self.requests else 0.0


def _stable(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in VOLATILE}


def check_decisions(
    requests: Sequence[RequestRef],
    decisions: Iterable[Mapping[str, Any]],
    forbidden_ids: frozenset[str] | set[str] = frozenset(),
) -> DecisionCheck:
    """Lost, gaps, duplicates and their agreement, for the valid requests given."""
    by_id: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    n_dec = 0
    for d in decisions:
        by_id[d["request_id"]].append(d)
        n_dec += 1
    refs: dict[str, RequestRef] = {}
    for r in requests:
        refs.setdefault(r.request_id, r)
    out = DecisionCheck(requests=len(refs), decisions=n_dec)
    fields: Counter[str] = Counter()
    for rid, ds in by_id.items():
        if rid not in refs:
            if rid in forbidden_ids:
                out.decided_forbidden += 1
            else:
                out.unknown += 1
            continue
        out.max_copies = max(out.max_copies, len(ds))
        if len(ds) < 2:
            continue
        out.duplicate_ids += 1
        out.duplicates += len(ds) - 1
        first = _stable(ds[0])
        differ: set[str] = set()
        for d in ds[1:]:
            other = _stable(d)
            differ |= {k for k in first.keys() | other.keys() if first.get(k) != other.get(k)}
        if differ:
            out.disagreeing_ids += 1
            fields.update(differ)
            if "chosen_route" in differ:
                out.route_disagreeing_ids += 1
    out.differing_fields = dict(fields.most_common())
    per_part: dict[int, list[tuple[int, bool]]] = defaultdict(list)
    for rid, ref in refs.items():
        per_part[ref.partition].append((ref.offset, rid in by_id))
    for p, rows in sorted(per_part.items()):
        rows.sort()
        decided_offsets = [off for off, ok in rows if ok]
        last = decided_offsets[-1] if decided_offsets else -1
        missing = [off for off, ok in rows if not ok]
        gaps = [off for off in missing if off < last]
        if gaps:
            out.gaps[p] = gaps
        if len(missing) > len(gaps):
            out.tail[p] = len(missing) - len(gaps)
        out.decided += len(decided_offsets)
        out.lost += len(missing)
    return out


@dataclass
class RetryCheck:
    declines: int = 0
    exactly_one: int = 0
    missing: int = 0
    extra_ids: int = 0
    extra: int = 0
    unexpected: int = 0  # retry decisions for request ids that are no valid decline
    unexpected_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.extra == 0 and self.unexpected == 0


def valid_declines(outcomes: Iterable[Mapping[str, Any]]) -> set[str]:
    """Request ids of declined outcomes, each counted once however often it was delivered."""
    return {o["request_id"] for o in outcomes if not o["approved"]}


def check_retries(declines: set[str], retries: Iterable[Mapping[str, Any]]) -> RetryCheck:
    counts = Counter(r["request_id"] for r in retries)
    out = RetryCheck(declines=len(declines))
    for rid in declines:
        c = counts.get(rid, 0)
        if c == 0:
            out.missing += 1
        elif c == 1:
            out.exactly_one += 1
        else:
            out.extra_ids += 1
            out.extra += c - 1
    stray = [rid for rid in counts if rid not in declines]
    out.unexpected = sum(counts[rid] for rid in stray)
    out.unexpected_ids = sorted(stray)[:20]
    return out


def header_pairs(raw: Any) -> list[Header]:
    """A dead-letter record's `headers` as (key, value) pairs, whatever shape the schema gives
    them (today a map; a list of {key, value} records or of pairs keeps duplicates and nulls)."""
    if not raw:
        return []
    items = raw.items() if isinstance(raw, Mapping) else raw
    out: list[Header] = []
    for it in items:
        if isinstance(it, Mapping):
            k, v = it.get("key"), it.get("value")
        else:
            k, v = it
        if isinstance(k, bytes):
            k = k.decode("utf-8", "replace")
        if isinstance(v, str):
            v = v.encode()
        out.append((str(k), v))
    return out


def _original_size(rec: Mapping[str, Any], msg: Msg, size: int) -> bool:
    """The dead letter records the original size: a *size* field or header equal to it."""
    for k, v in rec.items():
        if "size" in k and isinstance(v, int) and v == size:
            return True
    for k, hv in msg.headers:
        if "size" in k and hv is not None and hv.strip().isdigit() and int(hv) == size:
            return True
    return False


@dataclass
class CaseResult:
    expect: str
    sent: int = 0
    right: int = 0
    wrong: dict[str, int] = field(default_factory=dict)
    missing: int = 0
    duplicated: int = 0  # dead letters beyond one for a source offset
    decided: int = 0  # a decision for the case's request id: accepted instead


@dataclass
class DeadLetterCheck:
    cases: dict[str, CaseResult] = field(default_factory=dict)
    injected: int = 0
    right: int = 0
    headers_checked: int = 0
    headers_kept: int = 0
    own_headers_checked: int = 0
    own_headers_ok: int = 0  # the DL message's authpilot.* headers are the worker's, once each
    values_checked: int = 0
    values_kept: int = 0
    oversized_checked: int = 0
    oversized_truncated: int = 0
    oversized_size_recorded: int = 0
    unexpected: dict[str, int] = field(default_factory=dict)  # reason -> DLs of valid messages
    by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def right_pct(self) -> float:
        return 100.0 * self.right / self.injected if self.injected else 100.0


def check_dead_letters(
    injected: Sequence[Sent],
    expected: Mapping[str, str],
    dead: Sequence[tuple[Msg, Mapping[str, Any]]],
    decided_ids: set[str] | frozenset[str] = frozenset(),
) -> DeadLetterCheck:
    """Each injected message (case -> expected reason) against the dead letters of its source
    offset; valid messages' dead letters are `unexpected`."""
    at: dict[tuple[str, int, int], list[tuple[Msg, Mapping[str, Any]]]] = defaultdict(list)
    reasons: Counter[str] = Counter()
    for m, rec in dead:
        at[(rec["source_topic"], rec["source_partition"], rec["source_offset"])].append((m, rec))
        reasons[rec["reason"]] += 1
    out = DeadLetterCheck(by_reason=dict(reasons))
    seen: set[tuple[str, int, int]] = set()
    for s in injected:
        if s.case is None:
            continue
        exp = expected[s.case]
        cr = out.cases.setdefault(s.case, CaseResult(exp))
        cr.sent += 1
        out.injected += 1
        src = (s.topic, s.partition, s.offset)
        seen.add(src)
        if s.request_id is not None and s.request_id in decided_ids:
            cr.decided += 1
        got = at.get(src, [])
        if not got:
            cr.missing += 1
            continue
        cr.duplicated += len(got) - 1
        m, rec = got[0]
        if rec["reason"] == exp:
            cr.right += 1
            out.right += 1
        else:
            cr.wrong[rec["reason"]] = cr.wrong.get(rec["reason"], 0) + 1
        if s.headers:
            out.headers_checked += 1
            kept = rec.get("header_list") or rec.get("headers")  # DeadLetter v2, else v1's map
            out.headers_kept += Counter(header_pairs(kept)) == Counter(s.headers)
        out.own_headers_checked += 1
        own_reason = [v for k, v in m.headers if k == "authpilot.reason"]
        own_source = [v for k, v in m.headers if k == "authpilot.source"]
        out.own_headers_ok += own_reason == [rec["reason"].encode()] and own_source == [
            f"{s.topic}/{s.partition}/{s.offset}".encode()
        ]
        if exp == "oversized":
            out.oversized_checked += 1
            v, size = rec.get("value"), len(s.value or b"")
            out.oversized_truncated += (
                v is not None and len(v) < size and ((s.value or b"").startswith(v))
            )
            out.oversized_size_recorded += _original_size(rec, m, size)
        else:
            out.values_checked += 1
            out.values_kept += rec.get("value") == s.value
    unexpected: Counter[str] = Counter()
    for src, rows in at.items():
        if src not in seen:
            unexpected.update(rec["reason"] for _, rec in rows)
    out.unexpected = dict(unexpected)
    return out


@dataclass
class CommitRow:
    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


def check_commits(
    committed: Mapping[str, Mapping[int, int | None]], ends: Mapping[str, Mapping[int, int]]
) -> list[CommitRow]:
    """Per partition the group's committed offset against the end; lag > 0 after the run has
    drained is a stuck commit (a restart would re-process from there)."""
    rows = []
    for topic, parts in ends.items():
        got = committed.get(topic, {})
        for p, end in sorted(parts.items()):
            rows.append(CommitRow(topic, p, got.get(p), end))
    return rows


def stuck(rows: Iterable[CommitRow]) -> list[CommitRow]:
    return [r for r in rows if r.lag > 0]


@dataclass
class Takeover:
    kill_ms: int
    dead_partitions: list[int]
    first_s: float | None  # first decision on any of them after the kill
    all_s: float | None  # every one of them had a decision after the kill
    per_partition: dict[int, float | None]


def takeover(
    kill_ms: int, dead_partitions: Sequence[int], decided: Iterable[tuple[int, int]]
) -> Takeover:
    """`decided`: (request partition, decided_at ms) of every decision; only those decided
    after the kill on the dead worker's partitions count."""
    firsts: dict[int, int] = {}
    dead = set(dead_partitions)
    for p, at in decided:
        if p in dead and at >= kill_ms and (p not in firsts or at < firsts[p]):
            firsts[p] = at
    per = {p: ((firsts[p] - kill_ms) / 1000.0 if p in firsts else None) for p in sorted(dead)}
    vals = [v for v in per.values() if v is not None]
    return Takeover(
        kill_ms,
        sorted(dead),
        min(vals) if vals else None,
        max(vals) if vals and len(vals) == len(per) else None,
        per,
    )

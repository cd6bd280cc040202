"""The chaos verifier's arithmetic on hand-built topic contents (no broker)."""

from __future__ import annotations

import random

from app.chaos import cases
from app.chaos.kafka_io import Msg, Sent
from app.chaos.report import Check, Result, markdown
from app.chaos.state import compare
from app.chaos.verify import (
    RequestRef,
    check_commits,
    check_dead_letters,
    check_decisions,
    check_retries,
    header_pairs,
    stuck,
    takeover,
    valid_declines,
)


def _d(rid: str, route: str = "a", at: int = 1, **kw):
    return {"request_id": rid, "chosen_route": route, "decided_at": at,
            "decision_latency_us": at, "policy": "sr", "propensity": 0.9, **kw}  # fmt: skip


def test_lost_gaps_and_tail_per_partition():
    reqs = [RequestRef(0, off, f"p0-{off}") for off in range(6)] + [
        RequestRef(1, off, f"p1-{off}") for off in range(3)
    ]
    # partition 0: 1 and 3 skipped while 4 was decided (gaps), 5 never reached (tail)
    decided = ["p0-0", "p0-2", "p0-4", "p1-0", "p1-1", "p1-2"]
    c = check_decisions(reqs, [_d(r) for r in decided])
    assert c.requests == 9 and c.decided == 6 and c.lost == 3
    assert c.gaps == {0: [1, 3]} and c.gap_count == 2
    assert c.tail == {0: 1}
    assert c.duplicates == 0 and c.disagreeing_ids == 0


def test_duplicates_identical_vs_disagreeing():
    reqs = [RequestRef(0, i, f"r{i}") for i in range(4)]
    decisions = [
        _d("r0"), _d("r0", at=9),  # same but for decided_at/latency: agreeing duplicate
        _d("r1"), _d("r1", route="b"), _d("r1", at=5),  # another route: disagreeing
        _d("r2"), _d("r2", propensity=0.5),  # another propensity: disagreeing, same route
        _d("r3"),
    ]  # fmt: skip
    c = check_decisions(reqs, decisions)
    assert c.lost == 0 and c.decisions == 8
    assert c.duplicates == 4 and c.duplicate_ids == 3 and c.max_copies == 3
    assert c.duplicate_pct == 100.0
    assert c.disagreeing_ids == 2 and c.route_disagreeing_ids == 1
    assert c.differing_fields == {"chosen_route": 1, "propensity": 1}


def test_decisions_for_injected_or_unknown_ids_are_counted_not_matched():
    c = check_decisions([RequestRef(0, 0, "ok")], [_d("ok"), _d("fuzz-1"), _d("ghost")],
                        forbidden_ids={"fuzz-1"})  # fmt: skip
    assert c.decided_forbidden == 1 and c.unknown == 1 and c.lost == 0


def test_one_retry_decision_per_decline():
    outcomes = [
        {"request_id": "a", "approved": False},
        {"request_id": "a", "approved": False},  # redelivered: still one decline
        {"request_id": "b", "approved": False},
        {"request_id": "c", "approved": False},
        {"request_id": "d", "approved": True},
    ]
    declines = valid_declines(outcomes)
    assert declines == {"a", "b", "c"}
    retries = [{"request_id": x} for x in ("a", "b", "b", "b", "d", "far")]
    r = check_retries(declines, retries)
    assert (r.declines, r.exactly_one, r.missing, r.extra_ids, r.extra) == (3, 1, 1, 1, 2)
    assert r.unexpected == 2 and r.unexpected_ids == ["d", "far"] and not r.ok
    assert check_retries({"a"}, [{"request_id": "a"}]).ok


def _dl(src: tuple[str, int, int], reason: str, value: bytes | None, headers=None, own=None):
    topic, p, off = src
    rec = {"source_topic": topic, "source_partition": p, "source_offset": off, "reason": reason,
           "value": value, "headers": headers or {}}  # fmt: skip
    own = (
        own
        if own is not None
        else [
            ("authpilot.reason", reason.encode()),
            ("authpilot.source", f"{topic}/{p}/{off}".encode()),
        ]
    )
    return Msg("dl", 0, off, None, b"", tuple(own)), rec


def test_dead_letters_matched_by_source_offset():
    sent = [
        Sent("req", b"k", b"junk", case="c.undecodable", partition=0, offset=5),
        Sent("req", b"k", b"bad", case="c.invalid", partition=1, offset=7, request_id="fuzz-7"),
        Sent("req", b"k", b"gone", case="c.invalid", partition=1, offset=8, request_id="fuzz-8"),
        Sent("req", b"k", b"fine", partition=0, offset=6),  # valid
    ]
    expected = {"c.undecodable": "undecodable", "c.invalid": "invalid_field"}
    dead = [
        _dl(("req", 0, 5), "undecodable", b"junk"),
        _dl(("req", 0, 5), "undecodable", b"junk"),  # delivered twice
        _dl(("req", 1, 7), "processing_error", b"bad"),  # wrong reason
        _dl(("req", 0, 6), "processing_error", b"fine"),  # a valid message dead-lettered
    ]
    c = check_dead_letters(sent, expected, dead, decided_ids={"fuzz-8"})
    assert c.injected == 3 and c.right == 1 and round(c.right_pct) == 33
    u, i = c.cases["c.undecodable"], c.cases["c.invalid"]
    assert (u.sent, u.right, u.duplicated) == (1, 1, 1)
    assert (i.sent, i.right, i.missing, i.decided, i.wrong) == (2, 0, 1, 1, {"processing_error": 1})
    assert c.unexpected == {"processing_error": 1}
    assert c.by_reason == {"undecodable": 2, "processing_error": 2}
    assert c.values_checked == 2 and c.values_kept == 2 and c.own_headers_ok == 2


def test_headers_kept_as_sent_and_own_headers_not_forged():
    sent_h = (("x", b"1"), ("x", b"2"), ("n", None), ("authpilot.reason", b"forged"))
    sent = [Sent("req", b"k", b"junk", sent_h, case="c", partition=0, offset=1),
            Sent("req", b"k", b"junk", sent_h, case="c", partition=0, offset=2),
            Sent("req", b"k", b"junk", sent_h, case="c", partition=0, offset=3)]  # fmt: skip
    as_list = [{"key": k, "value": v} for k, v in sent_h]
    collapsed = {"x": b"2", "n": b"None", "authpilot.reason": b"forged"}  # today's map
    forged_own = [("authpilot.reason", b"forged"), ("authpilot.reason", b"undecodable"),
                  ("authpilot.source", b"req/0/3")]  # fmt: skip
    dead = [_dl(("req", 0, 1), "undecodable", b"junk", as_list),
            _dl(("req", 0, 2), "undecodable", b"junk", collapsed),
            _dl(("req", 0, 3), "undecodable", b"junk", as_list, own=forged_own)]  # fmt: skip
    c = check_dead_letters(sent, {"c": "undecodable"}, dead)
    assert c.headers_checked == 3 and c.headers_kept == 2  # the map lost a duplicate and a null
    assert c.own_headers_checked == 3 and c.own_headers_ok == 2  # the forged reason was copied
    assert header_pairs(collapsed) == [("x", b"2"), ("n", b"None"), ("authpilot.reason",
                                                                      b"forged")]  # fmt: skip


def test_oversized_needs_a_truncated_prefix_and_the_original_size():
    big = b"\x00\x00\x00\x00\x01" + b"M" * 1000
    sent = [Sent("req", b"k", big, case="big", partition=0, offset=o) for o in (1, 2, 3)]
    dead = [
        _dl(("req", 0, 1), "oversized", big[:100]),
        _dl(("req", 0, 2), "oversized", big),  # not truncated
        _dl(("req", 0, 3), "oversized", b"other"),  # not a prefix
    ]
    dead[0][1]["original_size"] = len(big)
    c = check_dead_letters(sent, {"big": "oversized"}, dead)
    assert c.right == 3 and c.oversized_checked == 3
    assert c.oversized_truncated == 1 and c.oversized_size_recorded == 1


def test_commits_behind_the_end_are_stuck():
    rows = check_commits({"req": {0: 10, 1: 4}, "out": {0: None}},
                         {"req": {0: 10, 1: 9}, "out": {0: 3, 1: 0}})  # fmt: skip
    assert [(r.topic, r.partition, r.lag) for r in stuck(rows)] == [("req", 1, 5), ("out", 0, 3)]
    assert len(rows) == 4


def test_takeover_first_and_all_partitions():
    decided = [(0, 900), (2, 5_000), (2, 4_000), (3, 12_000), (1, 1_500)]
    t = takeover(1_000, [2, 3], decided)
    assert t.first_s == 3.0 and t.all_s == 11.0 and t.per_partition == {2: 3.0, 3: 11.0}
    t = takeover(1_000, [0, 2], decided)  # partition 0 had nothing after the kill
    assert t.first_s == 3.0 and t.all_s is None and t.per_partition[0] is None
    assert takeover(1_000, [0], decided).first_s is None


def test_state_compare_catches_over_counting():
    names = ["card_24h_n", "card_24h_ok", "route_1h_ok_rate"]
    ref = {"p1": [[2.0, 1.0, 0.5]], "p2": [[1.0, 1.0, None]], "p3": [[1.0, 0.0, 0.25]]}
    worker = {"p1": [[2.0, 1.0, 0.5]], "p2": [[3.0, 3.0, None]], "p3": [[1.0, 0.0, 0.5]]}
    c = compare(worker, ref, names)
    assert c.cards == 3 and c.mismatching == 2 and not c.ok
    assert c.features == {"card_24h_n": 1, "card_24h_ok": 1, "route_1h_ok_rate": 1}
    assert c.count_ratio == 6.0 / 4.0
    assert compare(ref, ref, names).ok
    missing = compare({}, ref, names)
    assert missing.mismatching == 3 and missing.features == {"<row missing>": 3}


def test_every_case_has_a_generator_and_a_reason():
    sp = cases.specs()
    assert set(cases.CASES) == set(sp)
    reasons = {"undecodable", "unknown_schema_id", "wrong_schema", "invalid_field", "oversized",
               "processing_error", "skipped"}  # fmt: skip
    assert {s.expect for s in sp.values()} <= reasons
    assert {s.topic for s in sp.values()} == {"requests", "outcomes"}


def test_plan_covers_every_case_and_respects_caps():
    names = cases.plan(300, random.Random(1))
    assert len(names) == 300 and set(names) == set(cases.specs())
    assert names.count("req.field_1mb") == 3
    few = cases.plan(10, random.Random(1))
    assert len(few) == 10 and len(set(few)) == 10


def test_markdown_table_shape():
    res = [
        Result(
            "kill",
            "kill -9 x2",
            "0 lost",
            [Check("lost", "0", "0", True), Check("info", "x", "-", None)],
        ),
        Result("fuzz", "fuzz", "a | b", [Check("right reason", "90%", "100%", False)]),
    ]
    md = markdown(res)
    lines = md.splitlines()
    assert lines[0] == "| fault | what happened | targets |"
    assert "| kill -9 x2 | 0 lost | PASS lost 0 (0) |" in lines
    assert "a \\| b" in md and "FAIL right reason 90% (100%)" in md
    assert "1 target(s) missed:" in md and "info" not in md

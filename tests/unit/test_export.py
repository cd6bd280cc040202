"""The topic export without Kafka: offsets bookkeeping, a crashed run's parts, decisions as
attempts, and whole runs over an in-memory stand-in for the topics."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.config import Settings
from app.contracts.codec import Codec
from app.contracts.ingest import require_valid_log
from app.experiments.eventlog import ReportError, read_event_log
from app.experiments.kafka_log import TopicRead
from app.harness.sample import T0, SampleTraffic
from app.lifecycle import export as ex


def decision_for(r: Mapping[str, Any], route: str, policy: str = "success_rate") -> dict[str, Any]:
    """A RoutingDecision of request `r` choosing `route`."""
    scores = [{"route_id": c["route_id"], "p_approve": 0.8, "score": 0.8,
               "fee_minor": c["fee_minor"], "samples": 3, "eliminated": False}
              for c in r["candidates"]]  # fmt: skip
    return {"request_id": r["request_id"], "payment_id": r["payment_id"], "attempt": r["attempt"],
            "decided_at": r["event_time"] + 2, "chosen_route": route, "scores": scores,
            "propensity": 0.9, "policy": policy, "arm": "default", "model_version": None,
            "reason_codes": ["SR_BEST"], "decision_latency_us": 800}  # fmt: skip


def history(n: int, seed: int, t0: int = T0) -> list[tuple[dict, dict, dict]]:
    """n (request, decision, outcome) of the sample world, a second apart; every fourth
    request is the second attempt of the payment before it. (Some retry is needed: DuckDB
    2.0.1's count_if over only NULLs is NULL, and check_log then fails on a log whose
    payments all have one attempt.)"""
    world = SampleTraffic(seed)
    out: list[tuple[dict, dict, dict]] = []
    for i in range(n):
        r = world.next_request(t0 + i * 1000)
        if i % 4 == 3:
            r.update(payment_id=out[-1][0]["payment_id"], attempt=2)
        d = decision_for(r, r["candidates"][i % len(r["candidates"])]["route_id"])
        out.append((r, d, world.outcome(r, d["chosen_route"], r["event_time"] + 150)))
    return out


# ---------------------------------------------------------------------------------- pure parts
def test_offsets_file_round_trip_and_merge(tmp_path):
    assert ex.load_state(tmp_path) == ex.ExportState(0, {})
    state = ex.ExportState(3, {"t.requests": {0: 10, 1: 12}, "t.outcomes": {0: 4}})
    path = ex.write_state(tmp_path, state)
    assert ex.load_state(tmp_path) == state
    assert json.loads(path.read_text())["offsets"]["t.requests"] == {"0": 10, "1": 12}
    assert [p.name for p in tmp_path.iterdir()] == ["offsets.json"]  # no temp file left
    # a read of partition 1 only moves partition 1; a new topic is added
    merged = ex.next_offsets(state.offsets, "t.requests", {1: 20})
    assert merged["t.requests"] == {0: 10, 1: 20} and merged["t.outcomes"] == {0: 4}
    assert ex.next_offsets({}, "t.x", {0: 5}) == {"t.x": {0: 5}}
    # saved 10 but the low watermark is now 15: 5 messages were deleted unread
    assert ex.expired({0: 10, 1: 12}, {0: 15, 1: 12, 2: 0}) == 5
    assert ex.expired(None, {0: 15}) == 0  # a first export starts at the low watermark
    path.write_text('{"sequence": "x"}')
    with pytest.raises(ex.ExportError, match="not an export offsets file"):
        ex.load_state(tmp_path)


def test_parts_of_an_uncommitted_run_are_deleted_and_nothing_else(tmp_path):
    for table in ("requests", "decisions"):
        (tmp_path / table).mkdir()
        for seq in (1, 2, 3):
            (tmp_path / table / ex.part_name(seq)).write_bytes(b"x")
    (tmp_path / "requests" / ".part-00004.parquet.tmp").write_bytes(b"x")  # died mid-write
    (tmp_path / "requests" / "mine.parquet").write_bytes(b"x")
    gone = ex.discard_uncommitted(tmp_path, 2)
    assert sorted(p.name for p in gone) == [".part-00004.parquet.tmp", *["part-00003.parquet"] * 2]
    assert sorted(p.name for p in (tmp_path / "requests").iterdir()) == [
        "mine.parquet", "part-00001.parquet", "part-00002.parquet"]  # fmt: skip
    assert ex.part_sequence(Path("part-00012.parquet")) == 12
    assert ex.part_sequence(Path("mine.parquet")) is None


def test_a_decision_becomes_an_attempt_with_its_route_propensity_and_policy():
    (r, d, _), (r2, d2, _) = history(2, 1)
    d2 = dict(d2, policy="expected_value", propensity=0.25, arm="model")
    schema = ex.arrow_schema(Codec(Settings()).decision.schema)
    got = ex.attempts_of(pa.Table.from_pylist([d, d2], schema=schema)).to_pylist()
    assert got == [
        {"request_id": r["request_id"], "route_id": d["chosen_route"], "propensity": 0.9,
         "policy": "success_rate"},
        {"request_id": r2["request_id"], "route_id": d2["chosen_route"], "propensity": 0.25,
         "policy": "expected_value"},
    ]  # fmt: skip


def test_avro_records_become_arrow_in_the_contract_types():
    codec = Codec(Settings())
    req = ex.arrow_schema(codec.request.schema)
    assert req.field("attempt").type == pa.int32() and req.field("network").type == pa.string()
    assert req.field("candidates").type == pa.list_(pa.struct(
        [("route_id", pa.string()), ("fee_minor", pa.int64()),
         ("acquirer_country", pa.string())]))  # fmt: skip
    assert ex.arrow_schema(codec.retry.schema).field("propensity").type == pa.float64()


# ------------------------------------------------------------------ whole runs, topics faked
class FakeTopics:
    """Topics as lists of encoded messages per partition, read as kafka_log reads them."""

    def __init__(self, s: Settings) -> None:
        self.s, self.codec = s, Codec(s)
        self.topics: dict[str, dict[int, list[bytes]]] = {}
        for name in ("requests", "outcomes", "decisions"):
            self.topics[getattr(s, f"topic_{name}")] = {0: [], 1: []}

    def add(self, history: list[tuple[dict, dict, dict]]) -> None:
        s, c = self.s, self.codec
        for i, (r, d, o) in enumerate(history):
            for topic, serde, rec in ((s.topic_requests, c.request, r),
                                      (s.topic_decisions, c.decision, d),
                                      (s.topic_outcomes, c.outcome, o)):  # fmt: skip
                self.topics[topic][i % 2].append(serde.encode(rec))

    def end_offsets(self, conf: dict, topic: str, optional: bool = False) -> dict[int, int] | None:
        if topic not in self.topics:
            if optional:
                return None
            raise ReportError(f"topic {topic} does not exist")
        return {p: len(m) for p, m in self.topics[topic].items()}

    def read_topic(self, conf, topic, decode, optional, progress, idle_timeout, start, end):
        start = start or {}
        rows, bad = [], 0
        for p, hi in end.items():
            for value in self.topics[topic][p][start.get(p, 0) : hi]:
                try:
                    rows.append(decode(value))
                except ValueError:
                    bad += 1
        return TopicRead(rows, bad, {p: start.get(p, 0) for p in end}, dict(end))


@pytest.fixture
def topics(monkeypatch) -> FakeTopics:
    fake = FakeTopics(Settings())
    monkeypatch.setattr(ex.kafka_log, "end_offsets", fake.end_offsets)
    monkeypatch.setattr(ex.kafka_log, "read_topic", fake.read_topic)
    return fake


def _ids(out: Path, table: str) -> list[str]:
    return [i for p in ex.committed_parts(out, table)
            for i in pq.read_table(p, columns=["request_id"]).column(0).to_pylist()]  # fmt: skip


def test_two_runs_add_only_the_new_messages(topics, tmp_path):
    s, out = topics.s, tmp_path / "log"
    first = history(40, 1)
    topics.add(first)
    topics.topics[s.topic_requests][0].append(b"\x00garbage")
    topics.topics[s.topic_requests][1].append(topics.codec.request.encode(first[0][0]))  # again
    run = ex.export_topics(s, out)
    assert run.sequence == 1
    assert {t.table: t.rows for t in run.tables} == {
        "requests": 40, "outcomes": 40, "attempts": 40, "decisions": 40, "shadow": 0,
        "retry_decisions": 0}  # fmt: skip
    assert run.table("requests").undecodable == 1 and run.table("requests").duplicates == 1
    assert not run.table("shadow").exists and not run.table("retry_decisions").exists
    assert run.table("requests").end == {0: 21, 1: 21}
    require_valid_log(out)
    assert len(read_event_log(out).decisions) == 40

    second = history(25, 2, T0 + 60_000)
    topics.add(second)
    topics.topics[s.topic_outcomes][0].append(topics.codec.outcome.encode(first[3][2]))  # again
    run = ex.export_topics(s, out)
    assert run.sequence == 2 and run.table("requests").rows == 25
    assert run.table("outcomes").rows == 25 and run.table("outcomes").duplicates == 1
    assert all(p.name == "part-00002.parquet" for p in run.paths)
    ids = _ids(out, "requests")
    assert len(ids) == len(set(ids)) == 65
    assert sorted(_ids(out, "attempts")) == sorted(ids)
    assert ex.load_state(out).offsets[s.topic_requests] == {0: 21 + 13, 1: 21 + 12}
    require_valid_log(out)
    run = ex.export_topics(s, out)  # nothing new: no part, the offsets stay
    assert run.sequence == 3 and run.paths == [] and len(_ids(out, "requests")) == 65
    assert ex.load_state(out).offsets[s.topic_requests] == {0: 34, 1: 33}


def test_a_run_that_dies_before_its_offsets_leaves_nothing_twice(topics, tmp_path, monkeypatch):
    s, out = topics.s, tmp_path / "log"
    topics.add(history(10, 1))
    ex.export_topics(s, out)
    topics.add(history(6, 2, T0 + 60_000))

    def crash(out: Path, state: ex.ExportState) -> Path:
        raise OSError("disk gone")

    with monkeypatch.context() as m:
        m.setattr(ex, "write_state", crash)
        with pytest.raises(OSError):
            ex.export_topics(s, out)
    assert (out / "requests" / "part-00002.parquet").exists()  # written, not committed
    assert ex.load_state(out).sequence == 1
    topics.add(history(4, 3, T0 + 120_000))
    run = ex.export_topics(s, out)
    assert run.sequence == 2 and len(run.discarded) == 4  # 4 tables' uncommitted parts
    assert run.table("requests").rows == 10  # the crashed run's 6 and the 4 since
    ids = _ids(out, "requests")
    assert len(ids) == len(set(ids)) == 20
    require_valid_log(out)


def test_an_outcome_without_a_request_is_dropped_and_counted(topics, tmp_path):
    s, out = topics.s, tmp_path / "log"
    h = history(5, 1)
    topics.add(h[1:])
    topics.topics[s.topic_outcomes][0].append(topics.codec.outcome.encode(h[0][2]))
    topics.topics[s.topic_decisions][0].append(topics.codec.decision.encode(h[0][1]))
    run = ex.export_topics(s, out)
    assert run.table("outcomes").orphans == 1 and run.table("outcomes").rows == 4
    assert run.table("attempts").orphans == 1 and run.table("decisions").rows == 5
    require_valid_log(out)


def test_a_directory_of_other_files_is_refused(topics, tmp_path):
    (tmp_path / "requests.parquet").write_bytes(b"x")
    with pytest.raises(ex.ExportError, match="not an export directory"):
        ex.export_topics(topics.s, tmp_path)


def test_a_missing_required_topic_is_an_error(topics, tmp_path):
    del topics.topics[topics.s.topic_decisions]
    with pytest.raises(ReportError, match="does not exist"):
        ex.export_topics(topics.s, tmp_path / "log")
    assert not (tmp_path / "log" / "offsets.json").exists()

"""`authpilot export --from-topics` on the real broker: a second run adds only what came since."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from app.contracts.codec import Codec
from app.contracts.ingest import require_valid_log
from app.experiments.eventlog import read_event_log
from app.features.offline import build_matrix
from app.harness.sample import T0
from app.lifecycle.export import committed_parts, export_topics
from tests.kafka_io import produce
from tests.unit.test_export import history

pytestmark = pytest.mark.kafka


def _produce(s, codec: Codec, rows) -> None:
    for topic, serde, i in ((s.topic_requests, codec.request, 0),
                            (s.topic_decisions, codec.decision, 1),
                            (s.topic_outcomes, codec.outcome, 2)):  # fmt: skip
        produce(s, topic, [(r[0]["card_fingerprint"], serde.encode(r[i])) for r in rows])


def test_export_twice_reads_each_message_once(settings_for, worker_env, monkeypatch, tmp_path):
    from app.kafka.topics import ensure_topics

    s, out = settings_for, tmp_path / "log"
    ensure_topics(s)
    codec = Codec(s)
    first = history(120, 1)
    _produce(s, codec, first)
    produce(s, s.topic_requests, [(b"k", b"not avro")])
    run = export_topics(s, out, idle_timeout=20)
    for table in ("requests", "outcomes", "attempts", "decisions"):
        assert run.table(table).rows == 120, table
    assert run.table("requests").undecodable == 1 and run.table("shadow").rows == 0
    assert sum(run.table("requests").end.values()) == 121
    require_valid_log(out)
    assert len(read_event_log(out).decisions) == 120
    assert len(build_matrix(out).df()) == 120

    # more traffic, one request delivered again; the second run through the CLI
    second = history(50, 2, T0 + 3_600_000)
    _produce(s, codec, second)
    produce(s, s.topic_requests, [(b"k", codec.request.encode(first[7][0]))])
    for k, v in worker_env.items():
        if k.startswith("AUTHPILOT_TOPIC_"):
            monkeypatch.setenv(k, v)
    from app.cli.main import main as cli

    rc = cli(["export", "--from-topics", "--out", str(out), "--bootstrap", str(s.kafka_bootstrap),
              "--idle-timeout", "20", "--quiet"])  # fmt: skip
    assert rc == 0
    ids = [i for p in committed_parts(out, "requests")
           for i in pq.read_table(p, columns=["request_id"]).column(0).to_pylist()]  # fmt: skip
    assert len(ids) == len(set(ids)) == 170
    assert [p.name for p in committed_parts(out, "outcomes")] == [
        "part-00001.parquet", "part-00002.parquet"]  # fmt: skip
    assert pq.read_table(committed_parts(out, "outcomes")[1]).num_rows == 50
    report = require_valid_log(out)
    assert report.rows == {"requests": 170, "outcomes": 170, "attempts": 170}
    assert len(read_event_log(out).outcomes) == 170

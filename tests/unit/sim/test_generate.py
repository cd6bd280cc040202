"""Event-log writer: determinism, exact size, row alignment, Avro field names, retries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from app.sim import simulate

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
FILES = ("requests", "attempts", "outcomes", "cards")


def _digest(d: Path) -> dict[str, str]:
    return {f: hashlib.sha256((d / f"{f}.parquet").read_bytes()).hexdigest() for f in FILES} | {
        "world": hashlib.sha256((d / "world.json").read_bytes()).hexdigest()
    }


def _avro_fields(name: str) -> list[str]:
    return [f["name"] for f in json.loads((SCHEMAS / f"{name}.avsc").read_text())["fields"]]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("simlogs")
    out = {}
    for name, seed, chunk in (("a", 7, 20_000), ("b", 7, 20_000), ("c", 8, 20_000)):
        out[name] = root / name
        simulate("steady", 60_000, seed, out[name], chunk_payments=chunk)
    return out


def test_same_seed_is_byte_identical(logs: dict[str, Path]) -> None:
    assert _digest(logs["a"]) == _digest(logs["b"])


def test_different_seed_differs(logs: dict[str, Path]) -> None:
    a, c = _digest(logs["a"]), _digest(logs["c"])
    for f in ("requests", "attempts", "outcomes"):
        assert a[f] != c[f]
    # the world is a function of the scenario, not of the run seed
    assert a["cards"] == c["cards"]


def test_exact_size_alignment_and_order(logs: dict[str, Path]) -> None:
    d = logs["a"]
    req = pq.read_table(d / "requests.parquet")
    att = pq.read_table(d / "attempts.parquet")
    out = pq.read_table(d / "outcomes.parquet")
    assert req.num_rows == att.num_rows == out.num_rows == 60_000
    for t in (att, out):
        assert t["request_id"].equals(req["request_id"])
    t = req["event_time"].to_numpy()
    assert (t[1:] >= t[:-1]).all()
    assert (out["request_time"].to_numpy() == t).all()
    assert (out["event_time"].to_numpy() >= t).all()
    assert len(set(req["request_id"].to_pylist())) == req.num_rows


def test_columns_use_avro_field_names(logs: dict[str, Path]) -> None:
    req = pq.read_schema(logs["a"] / "requests.parquet").names
    out = pq.read_schema(logs["a"] / "outcomes.parquet").names
    assert req == _avro_fields("AuthorizationRequest")
    assert out[: len(_avro_fields("AuthorizationOutcome"))] == _avro_fields("AuthorizationOutcome")
    cand = pq.read_table(logs["a"] / "requests.parquet", columns=["candidates"])["candidates"]
    assert [f.name for f in cand.type.value_type] == ["route_id", "fee_minor", "acquirer_country"]


def test_retries_and_propensities(logs: dict[str, Path]) -> None:
    req = pq.read_table(logs["a"] / "requests.parquet").to_pandas()
    att = pq.read_table(logs["a"] / "attempts.parquet").to_pandas()
    out = pq.read_table(logs["a"] / "outcomes.parquet").to_pandas()
    retries = req[req.attempt > 1]
    assert len(retries) > 1000
    assert retries.previous_route.notna().all() and retries.previous_response_code.notna().all()
    assert req[req.attempt == 1].previous_route.isna().all()
    # a retry follows a declined attempt of the same payment
    prev = out.set_index("request_id")
    key = retries.payment_id + "-" + (retries.attempt - 1).astype(str)
    assert (~prev.loc[key, "approved"]).all()
    assert (prev.loc[key, "response_code"].to_numpy() == retries.previous_response_code).all()
    # propensities: default route 1 - eps + eps/K, others eps/K (eps 0.1, K 4)
    assert set(att.propensity.round(6)) == {0.925, 0.025}
    assert 0.85 < (att.propensity > 0.5).mean() < 0.96
    assert (att.true_p_approve <= att.oracle_p_approve + 1e-12).all()


def test_hard_declines_retried_only_by_the_naive_schedule(logs: dict[str, Path]) -> None:
    req = pq.read_table(logs["a"] / "requests.parquet").to_pandas()
    prev = req.previous_response_code.dropna()
    assert prev.isin(["51", "05", "61", "91", "96", "1A", "65", "54", "41", "43", "14"]).all()

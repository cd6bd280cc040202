"""Online (the worker's FeatureState code) and offline (DuckDB SQL) features agree exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.features.definitions import FEATURE_NAMES, OWNERS, feature_hash
from app.features.offline import build_matrix
from app.features.online import FeatureState, new_buffer
from app.harness.sample import write_sample_log as make_log


def online_matrix(log: Path) -> dict[tuple[str, str], np.ndarray]:
    """Replay the log in time order through FeatureState, as the worker's agents call it."""
    reqs = pq.read_table(log / "requests.parquet").to_pylist()
    outs = pq.read_table(log / "outcomes.parquet").to_pylist()
    taken = {o["request_id"]: o["route_id"] for o in outs}
    events = [(r["event_time"], 0, r) for r in reqs] + [(o["event_time"], 1, o) for o in outs]
    events.sort(key=lambda e: (e[0], e[1]))
    state = FeatureState({o: {} for o in OWNERS})
    buf = new_buffer()
    rows = {}
    for _, kind, rec in events:
        if kind == 1:
            for owner in OWNERS:
                state.update_outcome(rec, owner)
            continue
        out = state.fill(rec, buf)
        for i, c in enumerate(rec["candidates"]):
            if c["route_id"] == taken[rec["request_id"]]:
                rows[(rec["request_id"], c["route_id"])] = out[i].copy()
    return rows


def mismatch_report(online, offline_df, rtol: float) -> list[str]:
    lines = []
    for rec in offline_df.itertuples(index=False):
        key = (rec.request_id, rec.route_id)
        got = online[key]
        want = np.array([getattr(rec, n) for n in FEATURE_NAMES], dtype=float)
        bad = ~np.isclose(got, want, rtol=rtol, atol=0, equal_nan=True)
        for j in np.flatnonzero(bad):
            lines.append(f"{key} {FEATURE_NAMES[j]}: online {got[j]!r} offline {want[j]!r}")
    return lines


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    return make_log(tmp_path_factory.mktemp("log"))


def test_online_and_offline_features_are_equal(log):
    df = build_matrix(log).df()
    online = online_matrix(log)
    assert len(df) == len(online) > 5000
    assert list(df.columns[5:]) == list(FEATURE_NAMES)
    # counts and sums exact; rates 1e-12 relative (the same division, in two engines)
    problems = mismatch_report(online, df, rtol=1e-12)
    assert not problems, f"{len(problems)} mismatches, first: \n" + "\n".join(problems[:20])
    # the features are not trivially zero: history is really seen
    assert (df["card_24h_n"] > 0).mean() > 0.2
    assert (df["bin_route_7d_n"] > 0).mean() > 0.9
    assert df["secs_since_last_decline"].notna().mean() > 0.3
    assert (df["card_merchant_30d_reatt_cit"] + df["card_merchant_30d_reatt_mit"]).max() > 0


def test_no_feature_sees_the_outcome_of_its_own_request(tmp_path):
    """Outcomes stamped at the request's own millisecond; flipping one row's own label (and
    code) must not change that row's features."""
    log = make_log(tmp_path / "a", n=800, same_ms=True)
    base = build_matrix(log).df()
    outs = pq.read_table(log / "outcomes.parquet").to_pylist()
    victim = outs[len(outs) // 2]
    for o in outs:
        if o["request_id"] == victim["request_id"]:
            flip = not o["approved"]
            o.update(approved=flip, response_code="00" if flip else "05",
                     failure_side="NONE" if flip else "ISSUER")  # fmt: skip
    pq.write_table(pa.Table.from_pylist(outs), log / "outcomes.parquet")
    after = build_matrix(log).df()
    row_b = base[base.request_id == victim["request_id"]].iloc[0]
    row_a = after[after.request_id == victim["request_id"]].iloc[0]
    assert row_a.approved != row_b.approved, "the label did change"
    a = row_a[list(FEATURE_NAMES)].astype(float).to_numpy()
    b = row_b[list(FEATURE_NAMES)].astype(float).to_numpy()
    assert np.array_equal(a, b, equal_nan=True)
    # ...while some later row of the same card does see it
    later = (after.event_time > victim["event_time"]).to_numpy()
    a_later = after[list(FEATURE_NAMES)].to_numpy(float)[later]
    b_later = base[list(FEATURE_NAMES)].to_numpy(float)[later]
    diff = ~np.isclose(a_later, b_later, equal_nan=True)
    assert diff.any()
    # and online agrees at the same millisecond (requests are processed before outcomes)
    assert not mismatch_report(online_matrix(log), after, rtol=1e-12)


def test_feature_hash_is_stable_and_names_are_unique():
    assert feature_hash() == feature_hash()
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)

"""The learned recovery model (app.retry.recovery_model): features, observations from a log,
a fit that finds what the table cannot see, the engine deciding with it, and the compiled
artifact agreeing with the native model."""

from __future__ import annotations

import numpy as np
import pytest

from app.contracts.vocab import DAY_MS, HOUR_MS
from app.models.serving.scoring import CompiledModel
from app.retry import recovery_model as rm
from app.retry.engine import RetryParams, decide_retry
from app.retry.rules import CardActivity, Counters, NetworkRules
from tests.modelkit import RETRY_T0 as T0
from tests.modelkit import retry_decline as _decline
from tests.modelkit import retry_history as _history

F = rm.Featurizer()


def _col(name: str) -> int:
    return rm.FEATURES.index(name)


def test_rows_describe_the_candidate_time():
    whens = [T0 + HOUR_MS, T0 + 5 * HOUR_MS, T0 + 2 * DAY_MS]
    x = F.rows(_decline(), CardActivity(3, 1, 10, 7), whens)
    assert x.shape == (3, len(rm.FEATURES))
    assert x[:, _col("utc_days_crossed")].tolist() == [0, 1, 2]  # 21:00, 01:00 next day
    assert x[:, _col("hour_utc")].tolist() == [21, 1, 20]
    assert x[0, _col("weekday_utc")] == 3  # Thursday (Monday = 0)
    assert x[0, _col("log_wait_hours")] == pytest.approx(np.log1p(1.0))
    assert x[0, _col("card_merchant_ok_30d")] == 7 and x[0, _col("mit")] == 1
    assert x[0, _col("decline_class")] == F.classes["do_not_honor"]
    assert x[0, _col("code")] == F.codes["05"]
    unknown = F.rows(_decline(code="ZZ"), CardActivity(), whens[:1])
    assert unknown[0, _col("code")] == -1


def test_days_since_payday_counts_from_the_start_of_the_last_one():
    table = {"paydays": [1, 15], "delays_hours": [0], "classes": {}}
    assert rm.days_since_payday(T0, table, None) == pytest.approx(20 / 24)  # the 1st, 20:00
    assert rm.days_since_payday(T0 + 13 * DAY_MS + 4 * HOUR_MS, table, None) == 0.0  # 15th 00:00


def test_observations_pair_each_retry_with_its_decline_and_the_card_windows():
    hist = _history(300)
    x, y, _t = rm.observations(hist, F)
    assert len(y) == 300 and x.shape == (300, len(rm.FEATURES))
    assert (x[:, _col("attempt")] == 1).all()  # the attempt declined
    crossed = x[:, _col("utc_days_crossed")] > 0
    assert y[crossed].mean() > 0.4 > 0.15 > y[~crossed].mean()
    assert (x[:, _col("card_n_24h")] >= 1).all()  # the decline itself is in the window


@pytest.fixture(scope="module")
def trained() -> tuple[rm.RecoveryModel, np.ndarray]:
    x, y, t = rm.observations(_history(4_000), F)
    return rm.fit(x, y, t), x


def test_the_model_learns_what_the_delay_table_cannot_see(trained):
    model, _ = trained
    m = model.metrics
    assert m["test_log_loss"] < m["test_log_loss_base_rate"] - 0.05
    same_day = F.rows(_decline(), CardActivity(1, 0, 1, 0), [T0 + 2 * HOUR_MS])
    next_day = F.rows(_decline(), CardActivity(1, 0, 1, 0), [T0 + 5 * HOUR_MS])
    assert model.predict(next_day)[0] > 0.4 > 0.15 > model.predict(same_day)[0]


def test_the_engine_retries_after_midnight_with_the_model_and_says_so(trained):
    model, _ = trained
    rules = NetworkRules()
    out = _decline()
    with_model = decide_retry(out, Counters(card=CardActivity(1, 0, 1, 0)), rules,
                              RetryParams(model=model), T0)  # fmt: skip
    assert with_model["action"] == "RETRY"
    assert with_model["not_before"] // DAY_MS > T0 // DAY_MS
    assert "RECOVERY:MODEL" in with_model["reason_codes"]
    table = decide_retry(out, Counters(), rules, RetryParams(), T0)
    assert "RECOVERY:TABLE" in table["reason_codes"]


def test_a_model_that_sees_no_value_stops():
    class Never:
        label = "retry/never"

        def predict(self, x: np.ndarray) -> np.ndarray:
            return np.zeros(len(x))

    d = decide_retry(_decline(), Counters(), NetworkRules(), RetryParams(model=Never()), T0)
    assert d["action"] == "STOP" and any(r.startswith("NOT_WORTH_IT") for r in d["reason_codes"])


def test_too_few_retries_are_refused():
    x, y, t = rm.observations(_history(50), F)
    with pytest.raises(ValueError, match="too few"):
        rm.fit(x, y, t)


def test_the_compiled_model_equals_the_native_one(trained, tmp_path):
    model, x = trained
    manifest = rm.compile_to(model, np.ascontiguousarray(x[:16]), tmp_path / "retry" / "v1",
                             "v1")  # fmt: skip
    compiled = CompiledModel(manifest.parent, rm.feature_hash(), max_batch=256)
    rows = np.ascontiguousarray(x[:256])
    got = compiled.score_many(rows, np.empty(256))
    np.testing.assert_allclose(got, model.predict(rows), atol=1e-6, rtol=0)
    with pytest.raises(Exception, match="feature"):
        CompiledModel(manifest.parent, "another-hash")


def test_exploration_draws_worthwhile_times_and_logs_their_exact_propensity(trained):
    model, _ = trained
    params = RetryParams(model=model, explore=0.3)
    seen: dict[int, list[float]] = {}
    n = 3_000
    for i in range(n):
        d = decide_retry(_decline(request_id=f"q{i}"), Counters(), NetworkRules(), params, T0)
        assert d["action"] == "RETRY" and d["expected_value"] > 0
        if "EXPLORE" not in d["reason_codes"]:  # the best time: 0.7 + 0.3 / m
            assert d["propensity"] > 0.7
        seen.setdefault(d["not_before"], []).append(d["propensity"])
    assert len(seen) > 3  # exploration reaches other worthwhile times
    for when, props in seen.items():
        assert len(set(props)) == 1  # one time, one probability
        freq = len(props) / n
        sd = (props[0] * (1 - props[0]) / n) ** 0.5
        assert abs(freq - props[0]) < 4 * sd + 1e-3, (when, freq, props[0])
    greedy = decide_retry(_decline(), Counters(), NetworkRules(), RetryParams(model=model), T0)
    assert greedy["propensity"] == 1.0 and "EXPLORE" not in greedy["reason_codes"]


def test_retry_decision_v2_adds_the_propensity_and_v1_records_still_decode():
    import io
    import json

    import fastavro

    from app.config import REPO_ROOT, Settings
    from app.contracts.codec import Codec, load_schema_file

    reg = json.loads((REPO_ROOT / "schemas" / "registry.json").read_text())
    versions = [{"id": 5, "file": "RetryDecision.v1.avsc"}, {"id": 8, "file": "RetryDecision.avsc"}]
    assert reg["subjects"]["RetryDecision"] == versions
    serde = Codec(Settings()).retry
    assert serde.schema_id == 8
    v1 = load_schema_file(REPO_ROOT / "schemas" / "RetryDecision.v1.avsc")
    old = decide_retry(_decline(), Counters(), NetworkRules(), RetryParams(), T0)
    old.pop("propensity")
    buf = io.BytesIO()
    buf.write(b"\x00\x00\x00\x00\x05")  # Confluent framing: magic 0, schema id 5
    fastavro.schemaless_writer(buf, v1, old)
    assert serde.decode(buf.getvalue())["propensity"] is None  # v1 bytes read with v2
    new = decide_retry(_decline(), Counters(), NetworkRules(), RetryParams(explore=0.1), T0)
    assert serde.decode(serde.encode(new))["propensity"] == new["propensity"]
    assert serde.decode(serde.encode(new))["model_version"] is None  # the table priced it


def test_vectorized_payday_features_agree_with_the_engines_calendar_functions():
    from app.retry.engine import _recovery, crosses_payday

    table = dict(_recovery(), paydays_by_country={"GB": [25], "DE": [1, 15], "US": [28]})
    rng = np.random.default_rng(11)
    for cc in ("GB", "DE", "US", "FR"):
        for _ in range(40):
            t0 = T0 + int(rng.integers(0, 400 * DAY_MS))
            whens = sorted(t0 + int(h) for h in rng.integers(0, 28 * DAY_MS, 6))
            x = rm.Featurizer(table).rows(_decline(t0, issuer_country=cc), CardActivity(), whens)
            want = [crosses_payday(t0, w, table, cc) for w in whens]
            assert x[:, _col("crosses_payday")].tolist() == want
            since = [rm.days_since_payday(w, table, cc) for w in whens]
            np.testing.assert_allclose(x[:, _col("days_since_payday")], since)


def test_refit_all_serves_a_model_that_learned_the_newest_retries():
    """The split never trains on its newest 30%; `refit_all` does, with the split's rounds, a
    cross-fitted calibration and the split's test metrics. In the newest 30% here the same-day
    retries sent before noon UTC approve (after noon they stay at 0.05): a change within a
    group of equal scores, which no calibration of the split's booster can express."""
    x, y, t = rm.observations(_history(4_000), F)
    order = np.argsort(t, kind="stable")
    x, y, t = x[order], y[order].copy(), t[order]
    newest = np.arange(len(y)) >= int(len(y) * 0.70)
    same_day = newest & (x[:, _col("utc_days_crossed")] == 0)
    morning = same_day & (x[:, _col("hour_utc")] < 12)
    y[morning] = 1
    split, served = rm.fit(x, y, t), rm.fit(x, y, t, refit_all=True)
    assert served.metrics["test_log_loss"] == split.metrics["test_log_loss"]
    assert served.metrics["refit_all_rows"] == len(y) and "refit_all_rows" not in split.metrics

    def gap(model: rm.RecoveryModel) -> float:
        p = model.predict(x)
        return float(p[morning].mean() - p[same_day & ~morning].mean())

    assert gap(served) > 0.5 > 0.2 > gap(split), (gap(split), gap(served))
    assert served.metrics["oof_ece"] < 0.05  # calibrated on its out-of-fold scores

"""The learned recovery model: P(a retry approves | the decline, the card, when it is sent).

One row per (declined outcome, candidate retry time). The features are what the retry agent
knows when it decides, computed by one function (`rows`) for training and serving:

- the decline: response code and its class, advice code, network, failure side, the attempt
  number just declined, 3-D Secure on it and on the retry, initiator, amount;
- the card's recent history: attempts and approvals in the last 24 h (card ring) and the last
  30 days at this merchant (card x merchant ring), read from the feature state after the
  decline was applied, as app.retry.counters reads them;
- the candidate time: hours of wait, UTC days crossed (an issuer's day-level verdict is often
  renewed at midnight), hour of day and weekday at the retry, whether a payday of the issuer
  country's calendar falls in between, and the days since the last payday at the retry.

Training rows come from the retries of an event log (every attempt k >= 2 of a payment whose
attempt k - 1 was declined), with the card windows replayed through app.features.online in
event-time order. A history logged by one retry policy shows only the waits it chose; logs
with explored delays (`--history-retry-explore`, or the retry agent's own exploration) teach
the model the others. Calibrated GBDT (LightGBM + app.models.calibration), compiled with the
router's toolchain (app.models.training.compile) under its own feature hash.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.contracts.vocab import DAY_MS, HOUR_MS, NETWORKS
from app.features.definitions import OWNERS
from app.features.online import FeatureState
from app.features.paycycle import pay_cycle
from app.models.calibration import Calibration, choose, log_loss
from app.retry.counters import card_counters
from app.retry.engine import _recovery, decline_class, payday_starts, paydays_for
from app.retry.rules import CardActivity

FEATURES: tuple[str, ...] = (
    "code",
    "decline_class",
    "advice_code",
    "network",
    "route_failure",
    "attempt",
    "prev_three_ds",
    "three_ds",
    "mit",
    "log_amount",
    "card_n_24h",
    "card_ok_24h",
    "card_merchant_n_30d",
    "card_merchant_ok_30d",
    "log_wait_hours",
    "utc_days_crossed",
    "hour_utc",
    "weekday_utc",
    "crosses_payday",
    "days_since_payday",
)
CATEGORICAL = ("code", "decline_class", "advice_code", "network")
ROLE = "retry"


def feature_hash() -> str:
    """Identity of the retry model's inputs: a compiled model is refused under another."""
    return hashlib.sha256(("retry-v1|" + ",".join(FEATURES)).encode()).hexdigest()[:16]


def _codes(table: Mapping[str, Any]) -> dict[str, int]:
    codes = sorted({c for cl in table["classes"].values() for c in cl["codes"]})
    return {c: i for i, c in enumerate(codes)}


def days_since_payday(t_ms: int, table: Mapping[str, Any], country: str | None) -> float:
    """Days from the start of the country's last payday (at or before t) to t."""
    return pay_cycle(t_ms, country, table)[0]


class Featurizer:
    """Rows of FEATURES for one declined outcome and its candidate retry times."""

    def __init__(self, table: Mapping[str, Any] | None = None) -> None:
        self.table = table or _recovery()
        self.codes = _codes(self.table)
        self.classes = {c: i for i, c in enumerate(self.table["classes"])}
        self.networks = {n: i for i, n in enumerate(NETWORKS)}

    def rows(self, outcome: dict[str, Any], card: CardActivity, whens: Sequence[int],
             three_ds: Sequence[bool] | None = None, out: np.ndarray | None = None,
             ) -> np.ndarray:  # fmt: skip
        """(len(whens) x FEATURES) for retries of `outcome` at `whens` (3DS per row)."""
        n = len(whens)
        x = out[:n] if out is not None else np.empty((n, len(FEATURES)))
        code = str(outcome["response_code"])
        advice = outcome.get("advice_code")
        t0 = int(outcome["event_time"])
        country = outcome.get("issuer_country")
        x[:, 0] = self.codes.get(code, -1)
        x[:, 1] = self.classes.get(decline_class(code, self.table), -1)
        x[:, 2] = int(advice) if advice and str(advice).isdigit() else -1
        x[:, 3] = self.networks.get(str(outcome.get("network")), -1)
        x[:, 4] = outcome.get("failure_side") == "ROUTE"
        x[:, 5] = outcome["attempt"]
        x[:, 6] = bool(outcome.get("three_ds"))
        x[:, 7] = [bool(v) for v in three_ds] if three_ds is not None else x[:, 6]
        x[:, 8] = outcome.get("initiator") == "MIT"
        x[:, 9] = math.log1p(max(float(outcome["amount_minor"]), 0.0))
        x[:, 10:14] = (card.n_24h, card.ok_24h, card.n_30d, card.ok_30d)
        w = np.asarray(whens, np.int64)
        day0 = t0 // DAY_MS
        x[:, 14] = np.log1p(np.maximum(w - t0, 0) / HOUR_MS)
        x[:, 15] = w // DAY_MS - day0
        x[:, 16] = (w % DAY_MS) // HOUR_MS
        x[:, 17] = (w // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
        # paydays: a payday starting in (t0's day, t1], and the days since the last one
        starts = payday_starts(t0, sorted(paydays_for(country, self.table)))
        upto = np.searchsorted(starts, w, side="right")
        x[:, 18] = upto > np.searchsorted(starts, day0 * DAY_MS, side="right")
        last = starts[np.maximum(upto - 1, 0)]
        x[:, 19] = np.where(upto > 0, (w - last) / DAY_MS, 31.0)
        return x


_FEATURIZERS: dict[int, tuple[Mapping[str, Any], Featurizer]] = {}


def featurizer(table: Mapping[str, Any]) -> Featurizer:
    """The Featurizer of a recovery table, made once per table (tables are read-only once
    loaded; the engine asks once per decline)."""
    hit = _FEATURIZERS.get(id(table))
    if hit is None or hit[0] is not table:
        hit = _FEATURIZERS[id(table)] = (table, Featurizer(table))
    return hit[1]


def observations(outcomes: Iterable[dict[str, Any]], featurizer: Featurizer,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(X, y, retry event time) of every retry in `outcomes` (event-time order), the card
    windows replayed as the worker keeps them. A retry is matched to its payment's declined
    previous attempt; 3-D Secure step-ups after SCA declines are rule-driven, not learned."""
    state = FeatureState({o: {} for o in OWNERS})  # only the card owner's rings are kept
    pending: dict[tuple[str, int], tuple[dict[str, Any], CardActivity]] = {}
    xs: list[np.ndarray] = []
    ys: list[bool] = []
    ts: list[int] = []
    for o in outcomes:
        key = (o["payment_id"], int(o["attempt"]))
        prev = pending.pop((o["payment_id"], int(o["attempt"]) - 1), None)
        if prev is not None:
            decline, card = prev
            t1 = int(o.get("request_time") or o["event_time"])
            if not (o.get("three_ds") and not decline.get("three_ds")):
                xs.append(featurizer.rows(decline, card, [t1], [bool(o.get("three_ds"))]))
                ys.append(bool(o["approved"]))
                ts.append(t1)
        state.update_outcome(o, "card")
        if not o["approved"]:
            pending[key] = (o, card_counters(state, o, int(o["event_time"])).card)
    if not xs:
        return np.empty((0, len(FEATURES))), np.empty(0, bool), np.empty(0, np.int64)
    return np.vstack(xs), np.array(ys, bool), np.array(ts, np.int64)


PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 40,  # ~10k retries in a 200k-attempt history: leaves of >= 0.4%
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "num_threads": 2,
    "seed": 17,
}


@dataclass
class RecoveryModel:
    """A trained recovery model: the booster and its calibration (native scoring)."""

    booster: Any  # lightgbm.Booster (imported where training happens, not in the worker)
    calibration: Calibration
    metrics: dict[str, float]
    label: str = "retry/native"

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.calibration.apply(self.booster.predict(x))


def fit(x: np.ndarray, y: np.ndarray, t: np.ndarray, rounds: int = 600,
        refit_all: bool = False) -> RecoveryModel:  # fmt: skip
    """Time split 70/15/15 (train, early stopping + calibration, test report); `refit_all`: the
    served booster refitted on every row with the split's rounds and calibrated out of fold,
    as the router's `train --refit-all` (app.models.training.train); the test metrics are the
    split's."""
    import lightgbm as lgb

    from app.models.training.train import best_rounds, refit_lightgbm

    if len(y) < 200:
        raise ValueError(f"{len(y)} retries: too few to learn a recovery model (>= 200)")
    order = np.argsort(t, kind="stable")
    x, y = x[order], y[order]
    a, b = int(len(y) * 0.70), int(len(y) * 0.85)
    cats = [FEATURES.index(c) for c in CATEGORICAL]
    dtr = lgb.Dataset(x[:a], y[:a], feature_name=list(FEATURES), categorical_feature=cats,
                      free_raw_data=False)  # fmt: skip
    dva = lgb.Dataset(x[a:b], y[a:b], reference=dtr)
    booster = lgb.train(PARAMS, dtr, rounds, valid_sets=[dva],
                        callbacks=[lgb.early_stopping(40, verbose=False)])  # fmt: skip
    cal, _ = choose(np.asarray(booster.predict(x[a:b])), y[a:b].astype(float))
    model = RecoveryModel(booster, cal, {})
    p = model.predict(x[b:])
    yt = y[b:].astype(float)
    base = float(y[:a].mean())
    model.metrics = {"retries": float(len(y)), "test_retries": float(len(yt)),
                     "test_log_loss": log_loss(yt, p),
                     "test_log_loss_base_rate": log_loss(yt, np.full(len(yt), base)),
                     "test_mean_p": float(p.mean()), "test_approval": float(yt.mean()),
                     "trees": float(booster.num_trees())}  # fmt: skip
    if refit_all:
        r = refit_lightgbm(PARAMS, x, y, best_rounds(booster), feature_name=list(FEATURES),
                           categorical_feature=cats)  # fmt: skip
        model = RecoveryModel(r.booster, r.calibration, model.metrics)
        p_served = model.predict(x[b:])
        model.metrics |= {
            "refit_all_rows": float(len(y)),
            "trees": float(r.booster.num_trees()),
            "oof_log_loss": r.oof["log_loss"],
            "oof_ece": r.oof["ece"],
            "test_mean_abs_diff_refit": float(np.abs(p_served - p).mean()),
        }
    return model


def compile_to(model: RecoveryModel, x_test: np.ndarray, out_dir: Path, version: str) -> Path:
    """The compiled artifact (manifest, checksums, warm-up vector) under the retry role."""
    from app.models.training.compile import compile_model

    return compile_model(model.booster, out_dir, feature_names=FEATURES,
                         feature_hash=feature_hash(), name="retry", version=version,
                         calibration=model.calibration, test_matrix=x_test,
                         metrics=model.metrics)  # fmt: skip


def outcomes_of_log(log_dir: Path) -> list[dict[str, Any]]:
    """An event log's outcomes as records in event-time order (app.contracts.ingest)."""
    import duckdb

    from app.contracts.ingest import table_sql

    sql = f"SELECT * FROM ({table_sql(log_dir, 'outcomes')}) ORDER BY event_time, attempt"
    df = duckdb.connect().sql(sql).df()
    recs: list[dict[str, Any]] = df.to_dict("records")
    for r in recs:  # pandas turns absent optional strings into NaN
        for k, v in r.items():
            if isinstance(v, float) and math.isnan(v) and k != "latency_ms":
                r[k] = None
    return recs


class CompiledRecovery:
    """A compiled retry model version as the engine's RecoveryScorer (verified at load:
    checksums, feature hash, probe, warm-up; app.models.serving.scoring)."""

    MAX_ROWS = 64  # candidate times per decline: 5 table delays, 11 more, a payday, 3 midnights

    def __init__(self, path: str | Path) -> None:
        from app.models.serving.scoring import CompiledModel

        self.model = CompiledModel(path, feature_hash(), max_batch=self.MAX_ROWS)
        self.name, self.version, self.label = self.model.name, self.model.version, self.model.label
        self._x = np.empty((self.MAX_ROWS, len(FEATURES)))
        self._out = np.empty(self.MAX_ROWS)

    def predict(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if n > self.MAX_ROWS:
            raise ValueError(f"{n} candidate rows > {self.MAX_ROWS}")
        self._x[:n] = x
        return self.model.score_many(self._x, self._out, n).copy()

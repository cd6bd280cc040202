"""Small compiled model versions for tests: trained on the sample world's features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.features.definitions import FEATURE_NAMES, feature_hash
from app.features.offline import build_matrix
from app.harness.sample import write_sample_log
from app.models.calibration import choose
from app.models.training.compile import compile_model
from app.models.training.train import fit, time_split


def build_versions(tmp: Path, versions: tuple[str, ...] = ("v1", "v2")) -> Path:
    """compiled_models-style root with router/<version> for each version; returns the root."""
    log = write_sample_log(tmp / "log", n=3000, seed=4)
    split = time_split(build_matrix(log).df())
    root = tmp / "models"
    for i, v in enumerate(versions):
        booster = fit(split, rounds=10 + 10 * i, params={"seed": i}, show=False)
        raw = booster.predict(split.valid[list(FEATURE_NAMES)])
        cal, _ = choose(raw, split.valid.approved.to_numpy().astype(float))
        (tmp / v).mkdir(parents=True, exist_ok=True)
        booster.save_model(str(tmp / v / "model.txt"))
        compile_model(tmp / v / "model.txt", root / "router" / v, name="router", version=v,
                      feature_names=list(FEATURE_NAMES), feature_hash=feature_hash(),
                      calibration=cal,
                      test_matrix=np.ascontiguousarray(split.test[list(FEATURE_NAMES)])[:16],
                      )  # fmt: skip
    return root

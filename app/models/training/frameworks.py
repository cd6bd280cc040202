"""The tree libraries a model can be trained with, behind one small protocol.

train, compile and the champion comparison need the same five things of a trained model
whatever library made it: save it portably, load it, predict probabilities (float64, so the
calibration map runs in the same precision as the C shim's), hand it to Treelite, and list its
split thresholds for the union-bug guard report. Each library answers them in one class here;
everything else looks a framework up by name (`FRAMEWORKS[...]`) or by file (`of_file`).

XGBoost differs in ways that matter for exactness: it compares float32(x) with float32
thresholds and sums float32 leaves, so Treelite keeps its float32 types and the generated
code reproduces XGBoost's outputs (the C shim, training/shim.c, handles both widths).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np


class Framework(Protocol):
    """What train/compile need of a tree library; `model_file` is the portable file name."""

    name: ClassVar[str]
    model_file: ClassVar[str]

    def save(self, booster: Any, path: Path) -> None: ...
    def load(self, path: Path) -> Any: ...
    def predict(self, booster: Any, x: np.ndarray) -> np.ndarray: ...
    def num_feature(self, booster: Any) -> int: ...
    def num_trees(self, booster: Any) -> int: ...
    def importance(self, booster: Any) -> np.ndarray: ...
    def treelite(self, path: Path) -> Any: ...
    def thresholds(self, path: Path) -> np.ndarray: ...


def split_thresholds(model_txt: Path) -> np.ndarray:
    """Every numerical split threshold of a LightGBM text model (categorical splits skipped)."""
    out: list[float] = []
    thr: list[str] = []
    for line in model_txt.read_text().splitlines():
        if line.startswith("threshold="):
            thr = line[len("threshold=") :].split()
        elif line.startswith("decision_type="):
            kinds = [int(v) for v in line[len("decision_type=") :].split()]
            out += [float(t) for t, k in zip(thr, kinds, strict=False) if not k & 1]
            thr = []
    return np.asarray(out, dtype=np.float64)


class LightGBM:
    name: ClassVar[str] = "lightgbm"
    model_file: ClassVar[str] = "model.txt"

    def save(self, booster: Any, path: Path) -> None:
        booster.save_model(str(path))

    def load(self, path: Path) -> Any:
        import lightgbm as lgb

        return lgb.Booster(model_file=str(path))

    def predict(self, booster: Any, x: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(x), dtype=np.float64)

    def num_feature(self, booster: Any) -> int:
        return int(booster.num_feature())

    def num_trees(self, booster: Any) -> int:
        return int(booster.num_trees())

    def importance(self, booster: Any) -> np.ndarray:
        return np.asarray(booster.feature_importance("gain"), dtype=np.float64)

    def treelite(self, path: Path) -> Any:
        import treelite

        return treelite.frontend.load_lightgbm_model(str(path))

    def thresholds(self, path: Path) -> np.ndarray:
        return split_thresholds(path)


def xgboost_json_for_treelite(text: str | bytes) -> str:
    """XGBoost 3.x JSON rewritten into what treelite 4.1.2 parses, or ValueError.

    Two changes since the format treelite 4.1 knows: base_score is written as a vector "[p]"
    (treelite reads it as 0, so logit(0) = -inf lands in the generated C), and the booster has
    a "cats" block for categorical encodings. A single-target binary model with an empty
    "cats" means exactly what it meant before, so the rewrite is exact; anything else is
    refused rather than loaded with allow_unknown_field (the warm-up vector would catch a
    wrong model, but a refusal says why)."""
    d = json.loads(text)
    learner = d["learner"]
    param = learner["learner_model_param"]
    objective = learner["objective"]["name"]
    if objective != "binary:logistic" or param.get("num_target", "1") != "1":
        raise ValueError(f"only single-target binary:logistic models compile, not {objective}")
    if any(t not in ("float", "q", "int", "i") for t in learner.get("feature_types", [])):
        raise ValueError("categorical features are not supported by the compiled path")
    base = param["base_score"]
    if base.startswith("["):
        values = json.loads(base)
        if len(values) != 1:
            raise ValueError(f"base_score {base} has more than one value")
        param["base_score"] = repr(float(values[0]))
    model = learner["gradient_booster"].get("model", {})
    cats = model.pop("cats", None)
    if cats and any(cats.get(k) for k in cats):
        raise ValueError("the model carries categorical encodings")
    return json.dumps(d)


class XGBoost:
    name: ClassVar[str] = "xgboost"
    model_file: ClassVar[str] = "model.json"

    def save(self, booster: Any, path: Path) -> None:
        booster.save_model(str(path))

    def load(self, path: Path) -> Any:
        import xgboost as xgb

        return xgb.Booster(model_file=str(path))

    def predict(self, booster: Any, x: np.ndarray) -> np.ndarray:
        # inplace_predict: no DMatrix copy, and it accepts +-inf (a DMatrix refuses them);
        # every tree counts: train saves the early-stopped booster sliced to its best round
        return np.asarray(booster.inplace_predict(np.asarray(x)), dtype=np.float64)

    def num_feature(self, booster: Any) -> int:
        return int(booster.num_features())

    def num_trees(self, booster: Any) -> int:
        return int(booster.num_boosted_rounds())

    def importance(self, booster: Any) -> np.ndarray:
        """Total gain per feature (what LightGBM's "gain" is), 0 for unused features."""
        gain = booster.get_score(importance_type="total_gain")
        names = booster.feature_names or [f"f{i}" for i in range(booster.num_features())]
        return np.array([float(gain.get(n, 0.0)) for n in names])

    def treelite(self, path: Path) -> Any:
        import treelite

        return treelite.frontend.from_xgboost_json(xgboost_json_for_treelite(path.read_bytes()))

    def thresholds(self, path: Path) -> np.ndarray:
        """Numerical split conditions (float32 in XGBoost, so none can sit next to a
        union-bug collision value; listed anyway so the guard report is uniform)."""
        trees = json.loads(path.read_bytes())["learner"]["gradient_booster"]["model"]["trees"]
        out = [
            c
            for t in trees
            for c, left, kind in zip(
                t["split_conditions"],
                t["left_children"],
                t.get("split_type", [0] * len(t["left_children"])),
                strict=True,
            )
            if left != -1 and kind == 0
        ]
        return np.asarray(out, dtype=np.float32).astype(np.float64)


FRAMEWORKS: dict[str, Framework] = {"lightgbm": LightGBM(), "xgboost": XGBoost()}


def of_booster(booster: Any) -> Framework:
    """The framework of a trained booster object, by the package that defines its type."""
    package = type(booster).__module__.split(".")[0]
    if package not in FRAMEWORKS:
        raise TypeError(f"not a LightGBM or XGBoost booster: {type(booster)!r}")
    return FRAMEWORKS[package]


def of_file(path: Path) -> Framework:
    """The framework of a portable model file, by its name (model.txt or model.json)."""
    for fw in FRAMEWORKS.values():
        if Path(path).suffix == Path(fw.model_file).suffix:
            return fw
    raise ValueError(f"{path}: expected a LightGBM .txt or an XGBoost .json model")


def of_train_dir(train_dir: Path) -> Framework:
    """The framework of an `authpilot train --out` directory, from its metrics.json (one
    without "trainer" is LightGBM's)."""
    summary = json.loads((Path(train_dir) / "metrics.json").read_text())
    return FRAMEWORKS[summary.get("trainer", "lightgbm")]

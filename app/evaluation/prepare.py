"""What a policy evaluation starts from: a logged history, the model trained on it, and the
state every learning policy has built from it by the time evaluated traffic arrives.

The history is the simulator's log of its randomized logging policy over the first
`history_days` of the scenario; the model is trained and compiled from it with the same
library functions as `authpilot features build`, `train` and `compile`, cached by a fingerprint
of the inputs. The learning state is then warmed by replaying the history's outcomes through
the worker's state code, so the first evaluated payment sees the windows a live worker would
have.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from app.evaluation.policies import LearnedState
from app.features.definitions import feature_hash
from app.models.serving.scoring import CompiledModel
from app.models.training.compile import SHIM_ABI
from app.routing.best_single import best_single_routes
from app.sim import load_scenario, simulate
from app.sim.world import World, build_world

Say = Callable[[str], None]
MODEL_NAME = "evaluate"


@dataclass
class Prepared:
    world: World
    log_dir: Path
    model_dir: Path
    best_routes: dict[str, str]
    outcomes: list[dict[str, Any]]  # the history's outcomes, in event-time order


def _fingerprint(*parts: Any) -> str:
    from app.models.training.train import IGNORED_FEATURES  # a model trained blind to others

    blob = json.dumps([*parts, feature_hash(), SHIM_ABI, IGNORED_FEATURES], sort_keys=True,
                      default=str)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def prepare(scenario: str, work: Path, history_days: float, attempts: int, seed: int,
            explore: float | None = None, retry_explore: float = 0.0,
            refit_all: bool = False, say: Say = print) -> Prepared:  # fmt: skip
    """Simulate the history, train + compile (cached in work/), load the best-route map.

    `explore` overrides the scenario's logging-policy epsilon: the share of history traffic
    sent to a uniformly drawn route, which is all a model ever learns about routes that are
    nobody's default. `refit_all`: the model refitted on every history row (`train
    --refit-all`), cached beside the split's model of the same history."""
    from app.features.offline import write_matrix
    from app.models.training.compile import compile_from_train_dir
    from app.models.training.train import run as train

    spec = load_scenario(scenario)
    world = build_world(spec)
    if history_days >= world.days:
        raise ValueError(f"history_days {history_days} must be under the horizon {world.days}")
    config: dict[str, Any] = {"days": history_days}
    if explore is not None:
        config["logging_policy"] = {"epsilon": explore}
    if retry_explore > 0:  # history retries at random delays: lets fit-retry see every delay
        config["retries"] = {"explore": retry_explore}
    key = _fingerprint(spec, config, attempts, seed)
    root = work / f"{world.name}-{key}"
    variant = "-refit-all" if refit_all else ""
    model_dir = root / f"models{variant}" / MODEL_NAME / "v1"
    log = root / "log"
    if not (model_dir / "manifest.json").exists():
        if not (root / "train.parquet").exists():
            shutil.rmtree(root, ignore_errors=True)
            say(f"history: {attempts:,} logged attempts over {history_days:g} days of "
                f"{world.name}")  # fmt: skip
            simulate(spec, attempts, seed, log, config=config, oracle=False)
            say("features: building the training matrix (DuckDB)")
            write_matrix(log, root / "train.parquet")
        say("train: gradient-boosted trees + calibration" + (", refitted on every row"
                                                              if refit_all else ""))  # fmt: skip
        train(root / "train.parquet", root / f"train{variant}", MODEL_NAME, "v1",
              refit_all=refit_all)  # fmt: skip
        say("compile: Treelite + TL2cgen")
        compile_from_train_dir(root / f"train{variant}", root / f"models{variant}",
                               matrix=root / "train.parquet")  # fmt: skip
    req = pq.read_table(log / "requests.parquet", columns=["request_id", "event_time"])
    out = pq.read_table(log / "outcomes.parquet").to_pylist()
    order = sorted(range(len(out)), key=lambda i: (out[i]["event_time"], i))
    outcomes = [out[i] for i in order]
    del req
    routes = best_single_routes([o["merchant_id"] for o in outcomes],
                                [o["route_id"] for o in outcomes],
                                [o["approved"] for o in outcomes])  # fmt: skip
    return Prepared(world, log, model_dir, routes, outcomes)


def load_model(p: Prepared) -> CompiledModel:
    """The champion trained and compiled on the history."""
    return CompiledModel(p.model_dir, feature_hash())


def warm_state(p: Prepared, sr_window: int, say: Say = print) -> LearnedState:
    """The learning state with the history's outcomes replayed through it."""
    state = LearnedState(sr_window)
    say(f"warm-up: replaying {len(p.outcomes):,} history outcomes into router state")
    for o in p.outcomes:
        state.observe(o)
    return state

"""Seeded payments-world simulator: scenarios, ground truth, oracle, event-log writer.

    from app.sim import load_world, simulate, p_approve, draw_outcome, oracle_route
    world = load_world("acquirer_outage")
    simulate("steady", attempts=1_000_000, seed=1, out_dir="data/steady")

Scenario format: app/simulate/SCENARIOS.md. Truth model: app/sim/truth.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.sim.generate import SimulationResult, simulate
from app.sim.logging_policy import choose_routes, propensity_of
from app.sim.requests import sample_requests
from app.sim.scenarios import list_scenarios, load_scenario
from app.sim.truth import (
    Batch,
    batch_from_columns,
    draw_many,
    draw_outcome,
    draw_outcomes,
    oracle_many,
    oracle_route,
    p_approve,
    p_approve_many,
    p_approve_matrix,
)
from app.sim.world import World, build_world


def load_world(
    scenario: str | Path | Mapping[str, Any] = "steady",
    config: Mapping[str, Any] | str | Path | None = None,
) -> World:
    """A World from a preset name / scenario file / spec dict, with optional overrides."""
    return build_world(load_scenario(scenario, config))


__all__ = [
    "Batch",
    "SimulationResult",
    "World",
    "batch_from_columns",
    "build_world",
    "choose_routes",
    "draw_many",
    "draw_outcome",
    "draw_outcomes",
    "list_scenarios",
    "load_scenario",
    "load_world",
    "oracle_many",
    "oracle_route",
    "p_approve",
    "p_approve_many",
    "p_approve_matrix",
    "propensity_of",
    "sample_requests",
    "simulate",
]

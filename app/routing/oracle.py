"""The oracle: the simulator's all-knowing router (true approval probabilities), the ceiling
every learned router is measured against. Demos and evaluation only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from app.routing.choice import fixed_route_decision

POLICY_NAME = "oracle"

OracleP = Callable[[dict[str, Any], str], float]  # (request, route) -> true p_approve


def oracle_decide(req: dict[str, Any], p_true: Sequence[float],
                  margin_bps: float) -> dict[str, Any]:  # fmt: skip
    """Highest true expected value p x margin - fee over the candidates (p from the simulator,
    aligned with req['candidates'])."""
    value = req["amount_minor"] * margin_bps / 10000.0
    ev = [p * value - c["fee_minor"] for p, c in zip(p_true, req["candidates"], strict=True)]
    chosen = max(range(len(ev)), key=lambda i: (ev[i], -i))
    d = fixed_route_decision(req, chosen, POLICY_NAME, ["ORACLE_TRUE_EV"])
    for s, p, e in zip(d["scores"], p_true, ev, strict=True):
        s["p_approve"], s["score"] = float(p), float(e)
    return d

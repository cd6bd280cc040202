"""The roles a compiled model is promoted to, and each role's key on the compacted control topic.

Kept apart from the registry so the CLI can offer them without importing Kafka or the scoring
code (`authpilot --help` stays fast).
"""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal["champion", "challenger", "retry"]
ROLES: tuple[str, ...] = get_args(Role)


def control_key(name: str, role: str) -> str:
    """The compacted key of a promotion: one champion, one retry model, a challenger per name."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    return f"challenger:{name}" if role == "challenger" else role


# Workers report what they serve on the same topic, one compacted key per worker; readers of
# promotions skip these keys (app.models.serving.registry, app.lifecycle.status).
SERVING_PREFIX = "serving:"


def serving_key(worker: str) -> str:
    return SERVING_PREFIX + worker


def is_promotion(key: str) -> bool:
    return not key.startswith(SERVING_PREFIX)

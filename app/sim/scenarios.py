"""Scenario presets: JSON files in app/data/scenarios/, resolved by `extends` and deep merge.

A scenario is one JSON object (format: app/simulate/SCENARIOS.md). Presets keep only what
differs from the preset they extend, so `acquirer_outage` is steady plus one event; a user's
`--config FILE` is merged on top of the chosen preset the same way. Merging is by key: nested
objects merge recursively (so one field of one issuer can be changed), lists and scalars
replace. Entity collections (routes, issuers, merchants) are objects keyed by id for exactly
that reason.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "data" / "scenarios"
_MAX_DEPTH = 8  # extends chains longer than this are a cycle or a mistake


def list_scenarios() -> list[str]:
    """Names of the preset scenarios shipped with the package."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.json"))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`: objects merge by key, everything else replaces."""
    out = copy.deepcopy(dict(base))
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read(name_or_path: str | Path) -> tuple[dict[str, Any], Path]:
    p = Path(name_or_path)
    if p.suffix != ".json":
        p = SCENARIO_DIR / f"{name_or_path}.json"
    if not p.is_file():
        raise FileNotFoundError(
            f"unknown scenario {name_or_path!r}: not a file and not a preset "
            f"(presets: {', '.join(list_scenarios())})"
        )
    return json.loads(p.read_text()), p


def _resolve(spec: dict[str, Any], origin: Path, depth: int = 0) -> dict[str, Any]:
    parent = spec.get("extends")
    if not parent:
        return spec
    if depth >= _MAX_DEPTH:
        raise ValueError(f"scenario 'extends' chain too deep at {origin}")
    if str(parent).endswith(".json"):  # a file, relative to the extending file
        pp = Path(parent)
        base, base_path = _read(pp if pp.is_absolute() else origin.parent / pp)
    else:
        base, base_path = _read(str(parent))
    merged = deep_merge(_resolve(base, base_path, depth + 1), spec)
    merged.pop("extends", None)
    return merged


def load_scenario(
    scenario: str | Path | Mapping[str, Any],
    overrides: Mapping[str, Any] | str | Path | None = None,
) -> dict[str, Any]:
    """The fully resolved scenario spec: preset (or file, or dict) + extends chain + overrides.

    `overrides` may be a dict or a path to a JSON file (the CLI's --config); it may itself say
    `extends`, which is ignored here because the preset already chose the base.
    """
    if isinstance(scenario, Mapping):
        spec = _resolve(copy.deepcopy(dict(scenario)), SCENARIO_DIR / "inline.json")
    else:
        raw, path = _read(scenario)
        spec = _resolve(raw, path)
    if overrides is not None:
        ov_spec: Mapping[str, Any] = (
            overrides if isinstance(overrides, Mapping) else json.loads(Path(overrides).read_text())
        )
        ov = {k: v for k, v in ov_spec.items() if k != "extends"}
        spec = deep_merge(spec, ov)
    spec.pop("extends", None)
    if "codes_file" in spec:
        codes = json.loads((SCENARIO_DIR / spec["codes_file"]).read_text())
        spec["codes"] = deep_merge(codes, spec.get("codes", {}))
        del spec["codes_file"]
    return spec

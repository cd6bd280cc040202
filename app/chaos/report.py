"""The chaos run's output: the issue's table (fault | what happened | targets) and JSON."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Check:
    """One target: what was measured, what it must be, whether it is met (None: no target)."""

    name: str
    value: str
    target: str
    ok: bool | None


@dataclass
class Result:
    scenario: str
    fault: str
    happened: str
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(results: list[Result]) -> str:
    lines = ["| fault | what happened | targets |", "|---|---|---|"]
    for r in results:
        targets = "; ".join(
            f"{'PASS' if c.ok else 'FAIL'} {c.name} {c.value} ({c.target})"
            for c in r.checks
            if c.ok is not None
        )
        lines.append(f"| {_cell(r.fault)} | {_cell(r.happened)} | {_cell(targets)} |")
    failed = [(r.scenario, c) for r in results for c in r.failed]
    lines.append("")
    if failed:
        lines.append(f"{len(failed)} target(s) missed:")
        lines += [f"- {s}: {c.name} = {c.value}, target {c.target}" for s, c in failed]
    else:
        lines.append("every target met")
    return "\n".join(lines) + "\n"


def _plain(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(x).items()}
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple | set | frozenset):
        return [_plain(v) for v in x]
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    return x


def write(results: list[Result], out: Path, meta: dict[str, Any]) -> Path:
    """report.md and results.json under `out`; returns the markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    md = out / "report.md"
    md.write_text(f"# chaos run {out.name}\n\n{markdown(results)}")
    (out / "results.json").write_text(
        json.dumps({"meta": meta, "results": _plain(results)}, indent=2, default=str)
    )
    return md


class Progress:
    """Progress lines on stderr: `[  12.3s] scenario: message`."""

    def __init__(self, stream: Any = None) -> None:
        self.t0 = time.monotonic()
        self.stream = stream or sys.stderr

    def __call__(self, scenario: str, msg: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {scenario}: {msg}", file=self.stream,
              flush=True)  # fmt: skip

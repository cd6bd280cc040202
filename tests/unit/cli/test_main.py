"""The `authpilot` command: every command registered, each one's --help, a light import."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from app.cli.main import build_parser, main

# Every command of the README and the Makefile; a command lost from a group module fails here.
COMMANDS = {
    "kafka", "topics", "worker", "backfill", "promote", "loadgen", "demo", "bench-e2e", "features",
    "simulate", "train", "compile", "bench-model", "bench-capacity", "report", "fit-retry",
    "train-retry", "export", "models", "retrain", "retire", "sweep",
    "evaluate-policy", "chaos", "chaos-verify",
}  # fmt: skip
NESTED = {
    "features": {"build", "check", "bench", "kernel"},
    "report": {"experiment", "shadow", "retries"},
}


def _choices(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = (a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _paths() -> list[list[str]]:
    out = []
    for name, p in _choices(build_parser()).items():
        out.append([name])
        if name in NESTED:
            out += [[name, n] for n in _choices(p)]
    return out


def test_the_registered_commands_are_the_expected_ones():
    commands = _choices(build_parser())
    assert set(commands) == COMMANDS
    for name, kinds in NESTED.items():
        assert set(_choices(commands[name])) == kinds


@pytest.mark.parametrize("path", _paths(), ids=" ".join)
def test_every_command_has_help(path, capsys):
    with pytest.raises(SystemExit) as e:
        main([*path, "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: authpilot {' '.join(path)}")


@pytest.mark.parametrize("path", [p for p in _paths() if len(p) == 1 and p[0] not in NESTED])
def test_every_leaf_command_has_a_handler(path):
    p = _choices(build_parser())[path[0]]
    assert callable(p.get_default("func"))


def test_a_group_without_its_action_is_a_usage_error(capsys):
    for name in NESTED:
        with pytest.raises(SystemExit) as e:
            main([name])
        assert e.value.code == 2
        assert f"usage: authpilot {name}" in capsys.readouterr().err


def test_compile_needs_model_or_rebuild(capsys):
    with pytest.raises(SystemExit) as e:
        main(["compile", "--matrix", "m.parquet"])
    assert e.value.code == 2
    assert "--model" in capsys.readouterr().err


def test_python_m_app_cli_help():
    r = subprocess.run([sys.executable, "-m", "app.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert all(c in r.stdout for c in COMMANDS)


def test_importing_the_cli_loads_no_training_or_analysis_library():
    """`authpilot worker` and `kafka status` start without scipy, pandas, the tree libraries,
    DuckDB or matplotlib: the command modules import those inside their handlers (scipy alone
    is ~1 s of import on the test machine)."""
    heavy = ("scipy", "pandas", "lightgbm", "xgboost", "duckdb", "matplotlib")
    code = f"import sys, app.cli.main; print([m for m in {heavy!r} if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"

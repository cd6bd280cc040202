"""`authpilot train-retry`: a compiled recovery model from a log's retries, which the worker's
model slots load for the retry role, or refuse (then the table, or the previous model, serves)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from app.cli.main import main as cli
from app.contracts.ingest import EXIT_REFUSED
from app.harness.sample import write_sample_log
from app.models.artifact import ModelRejected
from app.models.serving.registry import ModelSlots
from app.retry.recovery_model import FEATURES, CompiledRecovery


def test_train_retry_compiles_a_model_the_worker_serves(tmp_path, capsys):
    log = write_sample_log(tmp_path / "log", n=4_000, seed=5)
    root = tmp_path / "models"
    assert cli(["train-retry", "--log", str(log), "--out", str(root), "--version", "r1"]) == 0
    said = capsys.readouterr().out
    assert "retries; test log loss" in said and "--role retry" in said
    path = root / "retry" / "r1"
    slots = ModelSlots(root, "the-router-hash")  # the retry role checks its own hash
    rec = {"name": "retry", "version": "r1", "role": "retry"}
    served = slots.load(rec)
    assert isinstance(served, CompiledRecovery) and served.label == "retry/r1"
    p = served.predict(np.zeros((3, len(FEATURES))))
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()
    with pytest.raises(ModelRejected, match="feature"):  # not a router
        slots.load(dict(rec, role="champion"))
    # a tampered copy is refused at load. Never the loaded file itself: rewriting a library
    # this process has mapped corrupts it in memory (measured: a SIGSEGV in _dl_fini at exit)
    shutil.copytree(path, root / "retry" / "r2")
    lib = root / "retry" / "r2" / "model.so"
    lib.write_bytes(lib.read_bytes() + b"\0")
    with pytest.raises(ModelRejected, match="checksum"):
        slots.load(dict(rec, version="r2"))
    args = ["--log", str(log), "--out", str(root), "--version", "r3", "--refit-all"]
    assert cli(["train-retry", *args, "--no-track"]) == 0
    assert "served: refitted on all" in capsys.readouterr().out
    assert isinstance(slots.load(dict(rec, version="r3")), CompiledRecovery)
    manifest = json.loads((root / "retry" / "r3" / "manifest.json").read_text())
    assert manifest["metrics"]["refit_all_rows"] > manifest["metrics"]["test_retries"]


def test_train_retry_refuses_a_log_without_enough_retries(tmp_path, capsys):
    log = write_sample_log(tmp_path / "log", n=150, seed=5)
    assert cli(["train-retry", "--log", str(log), "--out", str(tmp_path / "m")]) == 2
    assert "too few" in capsys.readouterr().err
    assert cli(["train-retry", "--log", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2


def test_train_retry_writes_nothing_worse_than_the_base_rate(tmp_path, capsys):
    """2,063 retries of a small simulated history: the fit loses to one constant rate on its
    test split (log loss 0.88 vs 0.66), so no artifact is written to be promoted."""
    log = tmp_path / "log"
    assert cli(["simulate", "--scenario", "steady", "--attempts", "20000", "--seed", "1",
                "--out", str(log)]) == 0  # fmt: skip
    rc = cli(["train-retry", "--log", str(log), "--out", str(tmp_path / "m")])
    said = capsys.readouterr()
    assert rc == 2 and "does not beat the base rate" in said.err, said.err
    assert not (tmp_path / "m" / "retry").exists()


def test_train_retry_refuses_a_bad_log(tmp_path, capsys):
    log = write_sample_log(tmp_path / "log", n=300, seed=5)
    bad = tmp_path / "bad"
    shutil.copytree(log, bad)
    for f in bad.rglob("outcomes*"):
        if f.is_file():
            f.write_bytes(b"not parquet")
    assert cli(["train-retry", "--log", str(bad), "--out", str(tmp_path / "m")]) == EXIT_REFUSED

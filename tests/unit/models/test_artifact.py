"""The artifact module is the only meeting point of build and serve: serving never imports
training; the warm-up vector survives JSON (NaN as null); manifests are validated on read."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

import app.models.serving
from app.models.artifact import (
    LIBRARY,
    MANIFEST,
    MANIFEST_FORMAT,
    WARMUP_ATOL,
    ModelRejected,
    file_digests,
    read_manifest,
    sha256,
    warmup_arrays,
    warmup_vector,
)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


def test_serving_never_imports_training():
    serving = Path(app.models.serving.__file__).parent
    files = sorted(serving.glob("*.py"))
    assert len(files) >= 3
    for f in files:
        assert not any(m.startswith("app.models.training") for m in _imports(f)), f.name


def test_shim_and_probe_are_files_beside_their_modules():
    from app.models.serving import scoring
    from app.models.training import compile as comp

    assert comp.SHIM_C.is_file() and "authpilot_score_batch" in comp.SHIM_C.read_text()
    assert Path(scoring._PROBE_SCRIPT).is_file()
    header = "void predict(union Entry* data, int pred_margin, float* result);"
    src = comp.shim_source(header)
    assert src.startswith("#define AUTHPILOT_SHIM_ABI 3\n#define AUTHPILOT_RESULT float\n")
    with pytest.raises(ValueError):
        comp.shim_source("int main(void);")


def test_warmup_vector_round_trips_through_json():
    rows = np.array([[0.5, np.nan, -1.0], [np.nan, np.nan, np.nan]])
    tv = json.loads(json.dumps(warmup_vector(rows, np.array([0.1, 0.2]))))
    assert tv["rows"][1] == [None, None, None] and tv["atol"] == WARMUP_ATOL
    m = {"num_feature": 3, "feature_names": ["a", "b", "c"], "test_vector": tv}
    x, y = warmup_arrays(m)  # type: ignore[arg-type]
    assert np.array_equal(x, rows, equal_nan=True) and y.tolist() == [0.1, 0.2]
    for bad in ({**m, "num_feature": 2}, {**m, "feature_names": ["a"]},
                {**m, "test_vector": {**tv, "expected": [0.1]}}):  # fmt: skip
        with pytest.raises(ModelRejected) as e:
            warmup_arrays(bad)  # type: ignore[arg-type]
        assert e.value.reason == "manifest"


def test_read_manifest_checks_format_fields_and_library(tmp_path):
    (tmp_path / LIBRARY).write_bytes(b"lib")
    (tmp_path / ".hidden.tmp").write_bytes(b"x")
    files = file_digests(tmp_path)
    assert files == {LIBRARY: sha256(tmp_path / LIBRARY)}
    good = {"format": MANIFEST_FORMAT, "name": "m", "version": "v", "feature_names": [],
            "feature_hash": "h", "num_feature": 0, "files": files, "test_vector": {}}  # fmt: skip
    (tmp_path / MANIFEST).write_text(json.dumps(good))
    assert read_manifest(tmp_path)["name"] == "m"
    assert set(file_digests(tmp_path)) == {LIBRARY}  # the manifest never checksums itself
    for bad in ({**good, "format": MANIFEST_FORMAT + 1}, {**good, "files": {}},
                {k: v for k, v in good.items() if k != "feature_hash"}, [1]):  # fmt: skip
        (tmp_path / MANIFEST).write_text(json.dumps(bad))
        with pytest.raises(ModelRejected) as e:
            read_manifest(tmp_path)
        assert e.value.reason == "manifest"

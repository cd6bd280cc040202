"""evaluate-policy across histories (app.evaluation.histories): each target's verdict per
history side by side, and the command that runs the evaluation once per history."""

from __future__ import annotations

import json

from app.cli.main import main as cli
from app.evaluation import histories


def _c(name: str, value: str, ok: bool | None, target: str = ">= 70%") -> dict[str, object]:
    return {"check": name, "value": value, "target": target, "pass": ok}


def test_merge_lines_up_checks_by_name_and_counts_passes(tmp_path):
    a = [_c("shift share", "56% [49%, 63%]", False), _c("ceiling", "+17%", None, "context")]
    b = [_c("shift share", "74% [69%, 79%]", True), _c("only here", "3", True, "<= 20")]
    a.append(_c("captured (oracle uplift 4.00 [1.59, 6.41] pp)", "25%", False, ">= 80%"))
    b.append(_c("captured (oracle uplift 3.00 [0.86, 5.14] pp)", "44%", False, ">= 80%"))
    across = histories.merge([101, 102], [a, b])
    rows = {r.check: r for r in across.rows}
    # a figure of its history in a check's name does not split the check in two
    assert [r.check for r in across.rows] == ["shift share", "ceiling", "captured", "only here"]
    assert rows["captured"].values == ["25%", "44%"]
    assert rows["shift share"].passes == 1 and rows["shift share"].judged == 2
    assert rows["only here"].values == [None, "3"] and rows["only here"].judged == 1
    assert rows["ceiling"].judged == 0
    md = histories.markdown(across, "authpilot evaluate-policy --history-seeds 101,102")
    assert "| shift share | >= 70% | 56% [49%, 63%] MISS | 74% [69%, 79%] PASS | 1 of 2 |" in md
    assert "| ceiling | context | +17% | - | context |" in md
    # met means passed on every history: 'only here' passed on the one that has it, not on two
    assert "Targets met on every history: 0 of 3." in md
    assert md.index("| only here") < md.index("| ceiling")  # targets before context
    assert histories.leading_number("not reached, 305, not reached") == 305.0
    assert histories.leading_number("not reached") is None
    # a per-seed check plots every seed, not its first number
    assert histories.plotted("demoted, per seed", "6, 8, 12") == [6.0, 8.0, 12.0]
    assert histories.plotted("to 80%, per seed", "not reached, 305, not reached") == [305.0]
    assert histories.plotted("share", "72% [69%, 76%]") == [72.0]
    path = histories.write(across, tmp_path, "cmd")
    assert path.read_text() == histories.markdown(across, "cmd")
    assert (tmp_path / "histories.png").stat().st_size > 5_000
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["history_seeds"] == [101, 102] and saved["checks"][0]["pass"] == [False, True]
    assert histories.key("issuer_shift FR (+1; -1 elsewhere): share") == (
        "issuer_shift FR (+1; -1 elsewhere): share"
    )  # a parenthesis without a decimal is part of the name


def test_history_seeds_runs_the_evaluation_once_per_history(tmp_path, capsys):
    out = tmp_path / "report"
    rc = cli(["evaluate-policy", "--seeds", "1", "--payments", "300", "--history-attempts",
              "20000", "--history-seeds", "7,8", "--policies",
              "best_single_route+engine,expected_value+engine,oracle+engine",
              "--work", str(tmp_path / "work"), "--out", str(out)])  # fmt: skip
    assert rc in (0, 1)
    per = [json.loads((out / f"history-{s}" / "summary.json").read_text()) for s in (7, 8)]
    assert all(p["checks"] for p in per)
    # two histories: each simulated, trained and cached on its own
    assert len({d.name for d in (tmp_path / "work").iterdir()}) == 2
    md7 = (out / "history-7" / "report.md").read_text()
    assert "--history-seed 7 " in md7 and "--history-seeds" not in md7
    across = json.loads((out / "summary.json").read_text())
    assert across["history_seeds"] == [7, 8]
    first = per[0]["checks"][0]
    row = next(r for r in across["checks"] if r["check"] == histories.key(first["check"]))
    assert row["values"][0] == first["value"] and row["pass"][0] == first["pass"]
    assert "--history-seeds 7,8" in (out / "report.md").read_text()
    assert rc == (0 if all(c["pass"] is not False for p in per for c in p["checks"]) else 1)
    assert "history 8 (2 of 2)" in capsys.readouterr().err


def test_history_seeds_must_be_distinct_integers(capsys):
    for bad in ("", "7,7", "7,x"):
        assert cli(["evaluate-policy", "--history-seeds", bad, "--payments", "10"]) == 2
        assert "give distinct integers" in capsys.readouterr().err

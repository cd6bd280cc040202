"""The features benchmark's pure parts, and one small run that prints its three figures."""

from __future__ import annotations

from app.bench.features import run, with_routes


def test_requests_get_the_asked_number_of_candidates():
    req = {"request_id": "r", "candidates": [{"route_id": "a"}, {"route_id": "b"}]}
    four = with_routes(req, 4)
    assert [c["route_id"] for c in four["candidates"]] == ["a", "b", "a", "b"]
    assert [c["route_id"] for c in with_routes(req, 1)["candidates"]] == ["a"]
    assert with_routes(req, 2) is req
    assert len(req["candidates"]) == 2, "the input is not modified"
    assert with_routes({"candidates": []}, 4) == {"candidates": []}


def test_a_small_run_reports_kernel_reference_and_raw_traffic(capsys):
    run(events=300, routes=4, reference_events=50)
    out = capsys.readouterr().out
    assert "candidates/request: 4.0" in out
    assert "compiled kernel (" in out and "numpy reference (50 events)" in out
    assert "raw key traffic (ref)" in out and "numpy reference / compiled" in out

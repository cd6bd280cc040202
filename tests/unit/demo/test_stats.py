"""The demo's bookkeeping: per phase of the story, uplift within a phase, the watched segment."""

from __future__ import annotations

from app.demo.report import write_report
from app.demo.stats import HOUR_MS, DemoStats, phases_in

EVENTS = [
    ("RouteOutage acq-de", 10 * HOUR_MS, 14 * HOUR_MS),
    ("IssuerShift acq-gb", 18 * HOUR_MS, None),
]


def _feed(st: DemoStats, arm: str, t: int, route: str, approved: bool, country: str = "DE") -> None:
    d = {"request_id": f"{arm}{t}{route}{approved}{country}", "arm": arm, "chosen_route": route,
         "scores": [{"route_id": route, "fee_minor": 10}], "attempt": 1}  # fmt: skip
    out = {"event_time": t, "amount_minor": 1000, "approved": approved, "issuer_country": country}
    st.outcome(d, out, 1000.0)


def test_phases_follow_the_story():
    phase = phases_in(EVENTS)
    assert [phase(h * HOUR_MS) for h in (1, 10, 13, 14, 17, 18, 30)] == [
        "quiet", "RouteOutage acq-de on", "RouteOutage acq-de on", "RouteOutage acq-de over",
        "RouteOutage acq-de over", "IssuerShift acq-gb on", "IssuerShift acq-gb on"]  # fmt: skip


def test_an_incident_shows_in_its_phase_not_only_in_the_totals(tmp_path):
    st = DemoStats(2000, "holdout", phase_of=phases_in(EVENTS), watch=("FR", "acq-gb"))
    for k in range(100):  # quiet: both arms approve 90%
        ok = k % 10 != 0
        _feed(st, "ev", HOUR_MS + k, "acq-us", ok)
        _feed(st, "holdout", HOUR_MS + k, "acq-us", ok)
    for k in range(100):  # outage: the holdout stays on the broken route, ev leaves it
        _feed(st, "ev", 11 * HOUR_MS + k, "acq-us", k % 10 != 0)
        _feed(st, "holdout", 11 * HOUR_MS + k, "acq-de", k % 2 == 0)
    for k in range(40):  # after the shift: French cards, 3 in 4 of ev's on acq-gb
        _feed(st, "ev", 19 * HOUR_MS + k, "acq-gb" if k % 4 else "acq-us", True, "FR")
        _feed(st, "holdout", 19 * HOUR_MS + k, "acq-us", True, "FR")
    quiet = st.uplift("ev", "quiet")
    outage = st.uplift("ev", "RouteOutage acq-de on")
    assert abs(quiet.mean) < 1e-9 and quiet.lo < 0 < quiet.hi
    assert outage.mean == 40.0 and outage.lo > 25  # 90% vs 50% over 100 each
    assert st.uplift("ev").mean < outage.mean  # diluted over the whole run
    phases = dict(st.phase_snapshot())
    assert list(phases) == ["quiet", "RouteOutage acq-de on", "IssuerShift acq-gb on"]
    shifted = phases["IssuerShift acq-gb on"]
    assert (shifted["ev"].watched, shifted["ev"].watched_on_route) == (40, 30)
    assert shifted["holdout"].watched_on_route == 0
    assert phases["quiet"]["ev"].watched == 0

    path = write_report(tmp_path, st, "t", EVENTS, ["acq-de", "acq-gb", "acq-us"], {},
                        watch=st.watch)  # fmt: skip
    text = path.read_text()
    assert "## By phase of the story" in text
    row = next(line for line in text.splitlines()
               if line.startswith("| RouteOutage acq-de on | ev |"))  # fmt: skip
    assert "| 40.00 [" in row, row
    assert "| FR cards on acq-gb % |" in text
    assert "75 [" in next(line for line in text.splitlines()
                          if line.startswith("| IssuerShift acq-gb on | ev |"))  # fmt: skip

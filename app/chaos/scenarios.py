"""The fault scenarios of issue 15: kill -9 loop, broker SIGKILL, two-worker failover, fuzz,
redelivered and out-of-order outcomes. Each builds its own deployment (unique app id and
topics), runs real worker subprocesses, injures them, lets the stream drain, then hands what
the topics hold to the verifier (app.chaos.verify) and returns a report row with its targets.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.chaos import cases as fuzz_cases
from app.chaos import kafka_io
from app.chaos.kafka_io import Msg, Sent
from app.chaos.report import Check, Result
from app.chaos.state import (
    StateCheck,
    compare,
    probes,
    reference_rows,
    reference_state,
    sample_cards,
    worker_rows,
)
from app.chaos.traffic import ClosedLoop
from app.chaos.verify import (
    CommitRow,
    DeadLetterCheck,
    DecisionCheck,
    RequestRef,
    RetryCheck,
    check_commits,
    check_dead_letters,
    check_decisions,
    check_retries,
    stuck,
    takeover,
    valid_declines,
)
from app.config import Settings
from app.contracts.codec import Codec
from app.harness.process import WorkerProcess
from app.harness.sample import SampleTraffic
from app.kafka.topics import ensure_topics

Say = Callable[[str, str], None]


@dataclass(frozen=True)
class Options:
    """What a run does; the defaults are issue 15's full suite, SHORT the default-suite one."""

    rate: float = 300.0  # requests per second of the steady stream
    kills: int = 20  # worker SIGKILLs in the kill scenario
    kill_gap: tuple[float, float] = (2.0, 8.0)  # seconds of stream between ready and a kill
    broker_kills: int = 1
    broker_down: float = 15.0  # seconds the broker stays dead
    failovers: int = 5  # two-worker SIGKILL repetitions
    fuzz: int = 10_000  # malformed messages
    fuzz_requests: int = 2000  # valid requests among them
    fuzz_outcomes: int = 1000  # valid outcomes among them
    redelivered: int = 100  # outcomes delivered three times
    outlier: bool = True  # redelivery: also send one outcome 100 years ahead
    max_crash_restarts: int = 3  # fuzz: a worker that died is restarted this often
    partitions: int = 4
    seed: int = 1
    state_cards: int = 200  # cards whose state is compared with the replay
    ready_timeout: float = 180.0  # a restart waits out today's ~60 s session timeout
    takeover_timeout: float = 120.0
    drain_timeout: float = 1800.0  # a backlog of kills x restart wait x rate drains first
    drain_stall: float = 90.0  # ... unless no decision arrives for this long
    settle_timeout: float = 60.0  # a commit behind the end that does not move this long: stuck


SHORT = Options(rate=100.0, kills=1, kill_gap=(3.0, 5.0), failovers=1, fuzz=300,
                fuzz_requests=200, fuzz_outcomes=100, redelivered=20, state_cards=100,
                ready_timeout=120.0, takeover_timeout=75.0, drain_timeout=120.0,
                settle_timeout=30.0)  # fmt: skip

TOPICS = ("requests", "outcomes", "decisions", "retry_decisions", "shadow", "alerts", "control",
          "dead_letter")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _now_ms() -> int:
    return int(time.time() * 1000)


class Deployment:
    """One isolated authpilot deployment: app id, topics, N worker slots (own port, data dir)."""

    def __init__(self, bootstrap: str, run_dir: Path, name: str, partitions: int,
                 workers: int = 1) -> None:  # fmt: skip
        self.name = f"chaos-{name}-{uuid.uuid4().hex[:6]}"
        self.dir = run_dir / self.name
        # Our own names and cluster; every other AUTHPILOT_* setting of this process passes
        # through, to the workers and to the Settings the suite reads them with.
        ours: dict[str, Any] = {"kafka_bootstrap": bootstrap, "app_id": self.name,
                                "partitions": partitions}  # fmt: skip
        ours.update({f"topic_{t}": f"{self.name}.{t}" for t in TOPICS})
        env = dict(os.environ)
        env.update({f"AUTHPILOT_{k.upper()}": str(v) for k, v in ours.items()})
        self.env = env
        self.settings = Settings(**ours)
        self.workers = [
            WorkerProcess(
                dict(
                    env,
                    AUTHPILOT_WEB_PORT=str(_free_port()),
                    AUTHPILOT_DATA_DIR=str(self.dir / f"w{i}"),
                ),
                self.dir / f"w{i}.log",
            )
            for i in range(workers)
        ]
        ensure_topics(self.settings)

    def start(self, i: int, timeout: float) -> float:
        """Spawn worker i and wait until ready; seconds it took."""
        t0 = time.monotonic()
        self.workers[i].spawn()
        self.workers[i].wait_ready(timeout)
        return time.monotonic() - t0

    def kill(self, i: int) -> int:
        """SIGKILL worker i; the wall-clock ms of the kill."""
        at = _now_ms()
        self.workers[i].kill()
        return at

    def stop_all(self) -> None:
        for w in self.workers:
            if w.running:
                w.stop(30)


# -- verification ----------------------------------------------------------------------------
@dataclass
class Verified:
    decisions: DecisionCheck
    retries: RetryCheck
    dead: DeadLetterCheck
    commits: list[CommitRow]
    state: StateCheck | None
    decided_at: list[tuple[int, int]] = field(default_factory=list)  # (req partition, ms)
    unreadable: int = 0  # messages the suite sent as valid that it cannot decode itself
    valid_outcomes: int = 0
    outcome_messages: int = 0


def settle_commits(s: Settings, timeout: float, stall: float = 60.0) -> list[CommitRow]:
    """Wait until the group's committed offsets reach the ends of requests, outcomes and the
    owner updates (everything processed and committed), while they keep advancing: returns
    once none lags, or none advanced for `stall` s (a stuck commit, or a worker that stopped),
    or after `timeout`; the last rows read."""
    topics = [s.topic_requests, s.topic_outcomes, f"{s.app_id}-owner-updates"]
    deadline = time.monotonic() + timeout
    last: list[tuple[str, int, int | None]] = []
    moved = time.monotonic()
    while True:
        ends = {t: kafka_io.end_offsets(s, t) for t in topics}
        got = {t: kafka_io.committed(s, s.app_id, t) for t in topics}
        rows = check_commits(got, ends)
        now = [(r.topic, r.partition, r.committed) for r in rows]
        if now != last:
            last, moved = now, time.monotonic()
        if not stuck(rows) or time.monotonic() > deadline or time.monotonic() - moved > stall:
            return rows
        time.sleep(1.0)


def verify(s: Settings, injected: list[Sent], say: Say, scenario: str,
           state_port: int | None, state_cards: int, seed: int,
           settle: float) -> Verified:  # fmt: skip
    """Settle, read every topic back, compare state (while the worker still runs), count."""
    codec = Codec(s)
    say(scenario, "waiting for committed offsets to reach the ends")
    commits = settle_commits(s, max(settle, 60.0) * 30, stall=settle)
    time.sleep(2.5)  # the last owner batch and checkpoint (1 s interval) land
    say(scenario, "reading every topic back")
    topics = {t: kafka_io.read_all(s, t) for t in (s.topic_requests, s.topic_outcomes,
              s.topic_decisions, s.topic_retry_decisions, s.topic_dead_letter)}  # fmt: skip
    bad = {(x.topic, x.partition, x.offset) for x in injected if x.case is not None}
    forbidden = {x.request_id for x in injected if x.case is not None and x.request_id}
    dead: list[tuple[Msg, dict[str, Any]]] = [
        (m, codec.dead_letter.decode(m.value)) for m in topics[s.topic_dead_letter]
    ]
    dead_src = {(r["source_topic"], r["source_partition"], r["source_offset"]) for _, r in dead}
    unreadable = 0
    refs: list[RequestRef] = []
    by_card: dict[str, dict[str, Any]] = {}
    part_of: dict[str, int] = {}
    for m in topics[s.topic_requests]:
        src = (m.topic, m.partition, m.offset)
        if src in bad:
            continue
        try:
            req = codec.request.decode(m.value)
        except Exception:
            unreadable += 1
            continue
        part_of.setdefault(req["request_id"], m.partition)
        by_card[req["card_fingerprint"]] = req
        if src not in dead_src:  # dead-lettered valid requests are counted there, not lost
            refs.append(RequestRef(m.partition, m.offset, req["request_id"]))
    outcomes: list[dict[str, Any]] = []
    for m in topics[s.topic_outcomes]:
        if (m.topic, m.partition, m.offset) in bad:
            continue
        try:
            outcomes.append(codec.outcome.decode(m.value))
        except Exception:
            unreadable += 1
    decisions = [codec.decision.decode(m.value) for m in topics[s.topic_decisions]]
    retries = [codec.retry.decode(m.value) for m in topics[s.topic_retry_decisions]]
    dc = check_decisions(refs, decisions, forbidden)
    rc = check_retries(valid_declines(outcomes), retries)
    dl = check_dead_letters(injected, {n: sp.expect for n, sp in fuzz_cases.specs().items()},
                            dead, {d["request_id"] for d in decisions})  # fmt: skip
    decided_at = [(part_of[d["request_id"]], d["decided_at"]) for d in decisions
                  if d["request_id"] in part_of]  # fmt: skip
    st = None
    if state_port is not None:
        say(scenario, "comparing card state with a straight replay")
        st = _state_check(state_port, outcomes, by_card, injected, state_cards, seed, codec)
    return Verified(dc, rc, dl, commits, st, decided_at, unreadable,
                    len({o["request_id"] for o in outcomes}), len(outcomes))  # fmt: skip


def _state_check(port: int, outcomes: list[dict[str, Any]], by_card: dict[str, dict[str, Any]],
                 injected: list[Sent], n: int, seed: int, codec: Codec) -> StateCheck:  # fmt: skip
    if not outcomes:
        return StateCheck(error="no outcomes to compare")
    touched = {x.key.decode() for x in injected if x.case is not None and x.key and
               x.topic.endswith(".outcomes")}  # fmt: skip
    cards = sample_cards({o["card_fingerprint"] for o in outcomes}, n, random.Random(seed),
                         touched)  # fmt: skip
    at = max(max(o["event_time"] for o in outcomes), _now_ms()) + 1
    reqs = probes(by_card, cards, at)
    try:
        got = worker_rows(port, reqs)
    except Exception as exc:
        return StateCheck(cards=len(reqs), error=f"/debug/features: {type(exc).__name__}: {exc}")
    return compare(got, reference_rows(reference_state(outcomes), reqs))


# -- the common checks -------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{x:.2f}%"


def stream_checks(v: Verified, dup_target: bool = True) -> list[Check]:
    d = v.decisions
    checks = [
        Check("lost", f"{d.lost} ({d.lost - d.gap_count} never reached)", "0", d.lost == 0),
        Check("offset gaps", str(d.gap_count), "0", d.gap_count == 0),
        Check("disagreeing duplicates", str(d.disagreeing_ids), "0", d.disagreeing_ids == 0),
    ]
    if dup_target:
        checks.append(Check("duplicates", _pct(d.duplicate_pct), "<= 0.5%",
                            d.duplicate_pct <= 0.5))  # fmt: skip
    lag = stuck(v.commits)
    checks.append(Check("stuck commits", str(len(lag)), "0 partitions", not lag))
    r = v.retries
    checks.append(Check("RetryDecision per decline",
                        f"{r.exactly_one}/{r.declines} exactly one, {r.missing} none, "
                        f"{r.extra} extra, {r.unexpected} stray", "exactly one", r.ok))  # fmt: skip
    return checks


def state_checks(v: Verified) -> list[Check]:
    st = v.state
    if st is None:
        return []
    if st.error:
        return [Check("state = replay", st.error, "equal", False)]
    ratio = f", counts x{st.count_ratio:.3f}" if st.count_ratio else ""
    return [Check("state = replay", f"{st.mismatching}/{st.cards} cards differ{ratio}", "0 differ",
                  st.ok)]  # fmt: skip


def stream_text(v: Verified) -> str:
    d = v.decisions
    lag = stuck(v.commits)
    text = (f"{d.requests} requests, {d.decided} decided, {d.lost} undecided ({d.gap_count} in "
            f"offset gaps, {d.lost - d.gap_count} never reached); {d.duplicates} duplicates "
            f"({_pct(d.duplicate_pct)}, max "
            f"{d.max_copies} copies), {d.disagreeing_ids} disagreeing ({d.route_disagreeing_ids} "
            f"another route)")  # fmt: skip
    if d.differing_fields:
        text += " in " + ", ".join(f"{k} {n}" for k, n in list(d.differing_fields.items())[:4])
    text += f"; {v.valid_outcomes} outcomes ({v.outcome_messages} messages)"
    if lag:
        text += "; commit behind end on " + ", ".join(
            f"{r.topic.rsplit('.', 1)[-1]}/{r.partition} by {r.lag}" for r in lag[:6]
        )
    if v.state is not None and v.state.error is None:
        text += f"; state: {v.state.mismatching}/{v.state.cards} cards differ from the replay"
        if v.state.features:
            text += " (" + ", ".join(list(v.state.features)[:4]) + ")"
    if v.unreadable:
        text += f"; {v.unreadable} messages the suite cannot decode"
    return text


def _s(x: float | None) -> str:
    return "none" if x is None else f"{x:.1f} s"


# -- (a) kill -9 x N ---------------------------------------------------------------------------
def kill_loop(bootstrap: str, run_dir: Path, o: Options, say: Say) -> Result:
    name = "kill"
    t_start = time.monotonic()
    rng = random.Random(o.seed)
    dep = Deployment(bootstrap, run_dir, name, o.partitions)
    say(name, f"deployment {dep.name}: starting the worker")
    dep.start(0, o.ready_timeout)
    loop = ClosedLoop(dep.settings, o.rate, o.seed).start()
    kills: list[int] = []
    ready_s: list[float] = []
    errors: list[str] = []
    try:
        for k in range(o.kills):
            time.sleep(rng.uniform(*o.kill_gap))
            kills.append(dep.kill(0))
            say(name, f"kill {k + 1}/{o.kills} (SIGKILL); {loop.status()}")
            try:
                ready_s.append(dep.start(0, o.ready_timeout))
            except RuntimeError as exc:
                errors.append(str(exc).splitlines()[0])
                say(name, f"restart failed: {errors[-1]}")
                if not dep.workers[0].running:  # exited: try once more; else let it be
                    dep.workers[0].spawn()
            say(name, f"restarted, ready after {ready_s[-1] if ready_s else -1:.1f} s")
        time.sleep(rng.uniform(*o.kill_gap))
        loop.stop_producing()
        say(name, f"stream stopped; draining: {loop.status()}")
        left = loop.wait_drained(
            o.drain_timeout, quiet=2.0, progress=lambda m: say(name, m), stall=o.drain_stall
        )
        say(name, f"drained ({left} undecided); {loop.status()}")
        v = verify(dep.settings, [], say, name, dep.workers[0].port, o.state_cards, o.seed,
                   o.settle_timeout)  # fmt: skip
    finally:
        loop.close()
        dep.stop_all()
    firsts = [takeover(k, list(range(o.partitions)), v.decided_at) for k in kills]
    back = [t.first_s for t in firsts]
    back_ok = [x for x in back if x is not None]
    checks = stream_checks(v) + state_checks(v)
    happened = (f"{len(kills)} SIGKILLs at {o.rate:.0f} req/s, restarted at once: "
                f"{stream_text(v)}; first decision after a kill: median "
                f"{_s(sorted(back_ok)[len(back_ok) // 2] if back_ok else None)}, max "
                f"{_s(max(back_ok) if back_ok else None)}")  # fmt: skip
    if errors:
        happened += f"; {len(errors)} restarts not ready in {o.ready_timeout:.0f} s"
    return Result(name, f"kill -9 x{len(kills)} at {o.rate:.0f} req/s (one worker)", happened,
                  checks, {"kills_ms": kills, "ready_s": ready_s, "first_decision_s": back,
                           "verified": v, "restart_errors": errors},
                  time.monotonic() - t_start)  # fmt: skip


# -- (b) broker SIGKILL --------------------------------------------------------------------------
def _readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def _error_lines(path: Path, start: int) -> tuple[int, int]:
    """(ERROR lines, all lines) written to `path` after byte `start`."""
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read()
    lines = text.splitlines()
    return sum(b"ERROR" in ln for ln in lines), len(lines)


def restart_broker(broker: Any, say: Say, attempts: int = 3) -> str:
    """Start the suite's broker again, retrying: while it is down, clients reconnecting to a
    port inside the ephemeral range (32768-60999 here) can get that very port as their source
    port (a TCP self-connect), and the broker then fails to bind ("Address already in use");
    the self-connection goes away in seconds."""
    from app.kafka import local_broker

    for i in range(attempts):
        try:
            # log recovery after a SIGKILL reads every segment of every earlier scenario's
            # topics: minutes on a loaded machine, and a start that times out kills it
            return local_broker.start(broker, timeout=240)
        except local_broker.BrokerError as exc:
            if i == attempts - 1:
                raise local_broker.BrokerError(
                    f"the broker could not bind port {broker.port} again: look for a TCP "
                    f"self-connection (`ss -tanp | grep :{broker.port}`, local = remote "
                    "address): a client that reconnects to a port in the ephemeral range can "
                    "hold it; a broker port outside net.ipv4.ip_local_port_range avoids it"
                ) from exc
            say("broker", f"broker start failed ({str(exc).splitlines()[0][:80]}): retrying")
            time.sleep(2)
    raise AssertionError("unreachable")


def broker_kill(settings: Settings, run_dir: Path, o: Options, say: Say) -> Result:
    """Needs the local broker of `settings` (the suite's own): it is SIGKILLed and restarted."""
    from app.kafka import local_broker

    name = "broker"
    t_start = time.monotonic()
    broker = local_broker.LocalBroker.from_settings(settings)
    bootstrap = local_broker.start(broker)
    rng = random.Random(o.seed + 2)
    dep = Deployment(bootstrap, run_dir, name, o.partitions)
    say(name, f"deployment {dep.name} on the suite's broker {bootstrap}")
    dep.start(0, o.ready_timeout)
    w = dep.workers[0]
    loop = ClosedLoop(dep.settings, o.rate, o.seed + 2).start()
    outages: list[dict[str, Any]] = []
    try:
        for k in range(o.broker_kills):
            time.sleep(rng.uniform(*o.kill_gap))
            pid = local_broker.running_pid(broker)
            log_at = w.log.stat().st_size
            if pid is None:
                raise RuntimeError("the suite's broker is not running")
            t_kill = _now_ms()
            os.kill(pid, signal.SIGKILL)
            say(name, f"broker SIGKILL {k + 1}/{o.broker_kills} (pid {pid}); {loop.status()}")
            ready = total = 0
            down_until = time.monotonic() + o.broker_down
            while time.monotonic() < down_until:
                ready += _readyz(w.port) == 200
                total += 1
                time.sleep(0.5)
            errs, lines = _error_lines(w.log, log_at)
            restart_broker(broker, say)
            t_up = _now_ms()
            say(name, f"broker back after {(t_up - t_kill) / 1000:.1f} s; {loop.status()}")
            back = loop.wait_partitions(list(range(o.partitions)), t_up, o.takeover_timeout)
            recovered = (_now_ms() - t_up) / 1000 if back else None
            outages.append({"down_s": (t_up - t_kill) / 1000, "readyz_200": ready,
                            "readyz_polls": total, "error_lines": errs, "log_lines": lines,
                            "worker_alive": w.running, "recovered_s": recovered})  # fmt: skip
            say(name, f"outage {k + 1}: /readyz 200 on {ready}/{total} polls, {errs} ERROR "
                      f"lines, every partition deciding again {_s(recovered)} after")  # fmt: skip
        time.sleep(3)
        loop.stop_producing()
        left = loop.wait_drained(
            o.drain_timeout, quiet=2.0, progress=lambda m: say(name, m), stall=o.drain_stall
        )
        say(name, f"drained ({left} undecided); {loop.status()}")
        v = verify(dep.settings, [], say, name, w.port, o.state_cards, o.seed, o.settle_timeout)
    finally:
        loop.close()
        dep.stop_all()
        if local_broker.running_pid(broker) is None:  # the scenarios after this one need it
            restart_broker(broker, say)
    ready200 = sum(x["readyz_200"] for x in outages)
    errs = sum(x["error_lines"] for x in outages)
    down = sum(x["down_s"] for x in outages)
    rec = [x["recovered_s"] for x in outages]
    checks = stream_checks(v, dup_target=False) + state_checks(v) + [
        Check("/readyz while the broker is down", f"200 on {ready200} polls", "never 200",
              ready200 == 0),
        Check("decisions resumed", ", ".join(_s(x) for x in rec), "every outage",
              all(x is not None for x in rec)),
        Check("ERROR log lines while down", f"{errs} in {down:.0f} s", "no storm", None),
    ]  # fmt: skip
    happened = (f"{len(outages)} broker SIGKILL(s), down {down:.0f} s in all: {stream_text(v)}; "
                f"/readyz 200 on {ready200} of {sum(x['readyz_polls'] for x in outages)} polls "
                f"while down; {errs} ERROR lines; every partition deciding again "
                f"{', '.join(_s(x) for x in rec)} after the broker was back")  # fmt: skip
    return Result(name, f"broker SIGKILL x{len(outages)}, {o.broker_down:.0f} s down", happened,
                  checks, {"outages": outages, "verified": v},
                  time.monotonic() - t_start)  # fmt: skip


# -- (c) two-worker failover ---------------------------------------------------------------------
def _members(dep: Deployment, want: int, timeout: float) -> dict[str, list[int]]:
    """member id -> requests partitions, once the group is stable with `want` members that
    each own requests partitions covering all of them (or {} on timeout)."""
    s = dep.settings
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state, members = kafka_io.group_members(s, s.app_id)
        except Exception:
            state, members = "ERROR", []
        got = {m.member_id: m.partitions.get(s.topic_requests, []) for m in members}
        covered = sorted(p for v in got.values() for p in v)
        if (state == "STABLE" and len(got) == want and all(got.values())
                and covered == list(range(s.partitions))):  # fmt: skip
            return got
        time.sleep(0.5)
    return {}


def failover(bootstrap: str, run_dir: Path, o: Options, say: Say) -> Result:
    name = "failover"
    t_start = time.monotonic()
    rng = random.Random(o.seed + 3)
    dep = Deployment(bootstrap, run_dir, name, o.partitions, workers=2)
    say(name, f"deployment {dep.name}: starting two workers")
    dep.start(0, o.ready_timeout)
    first = _members(dep, 1, o.ready_timeout)
    owner = {m: 0 for m in first}
    dep.start(1, o.ready_timeout)
    both = _members(dep, 2, o.ready_timeout)
    owner.update({m: 1 for m in both if m not in owner})
    loop = ClosedLoop(dep.settings, o.rate, o.seed + 3).start()
    runs: list[dict[str, Any]] = []
    try:
        for k in range(o.failovers):
            time.sleep(rng.uniform(*o.kill_gap))
            victim = k % 2
            members = _members(dep, 2, o.ready_timeout)
            mine = [p for m, ps in members.items() if owner.get(m) == victim for p in ps]
            if not mine:
                say(name, f"cannot tell worker {victim}'s partitions: {members} {owner}")
            t_kill = dep.kill(victim)
            say(name, f"failover {k + 1}/{o.failovers}: SIGKILL worker {victim} owning "
                      f"requests partitions {mine}; {loop.status()}")  # fmt: skip
            taken = loop.wait_partitions(mine or list(range(o.partitions)), t_kill,
                                         o.takeover_timeout)  # fmt: skip
            live = (_now_ms() - t_kill) / 1000
            say(name, f"survivor deciding on all of them after {live:.1f} s" if taken else
                      f"not taken over within {o.takeover_timeout:.0f} s")  # fmt: skip
            survivors = set(members) - {m for m in members if owner.get(m) == victim}
            dep.start(victim, o.ready_timeout)
            again = _members(dep, 2, o.ready_timeout)
            owner.update({m: victim for m in again if m not in survivors})
            say(name, f"worker {victim} back; {loop.status()}")
            runs.append({"victim": victim, "partitions": mine, "kill_ms": t_kill,
                         "taken_live": taken})  # fmt: skip
        time.sleep(2)
        loop.stop_producing()
        left = loop.wait_drained(
            o.drain_timeout, quiet=2.0, progress=lambda m: say(name, m), stall=o.drain_stall
        )
        say(name, f"drained ({left} undecided); {loop.status()}")
        v = verify(dep.settings, [], say, name, None, 0, o.seed, o.settle_timeout)
    finally:
        loop.close()
        dep.stop_all()
    tos = [takeover(r["kill_ms"], r["partitions"] or list(range(o.partitions)), v.decided_at)
           for r in runs]  # fmt: skip
    firsts = [t.first_s for t in tos]
    alls = [t.all_s for t in tos]
    known = [x for x in firsts if x is not None]
    worst = max(known) if known and len(known) == len(firsts) else None
    checks = stream_checks(v, dup_target=False) + [
        Check("takeover (first decision on a dead worker's partition)",
              ", ".join(_s(x) for x in firsts), "<= 10 s",
              worst is not None and worst <= 10.0),
    ]  # fmt: skip
    happened = (f"{len(runs)} SIGKILLs of one of two workers: takeover (first decision on its "
                f"partitions) {', '.join(_s(x) for x in firsts)}; all its partitions "
                f"{', '.join(_s(x) for x in alls)}; {stream_text(v)}")  # fmt: skip
    return Result(name, f"two workers in one group, one SIGKILLed x{len(runs)}", happened,
                  checks, {"runs": runs, "takeovers": tos, "verified": v},
                  time.monotonic() - t_start)  # fmt: skip


# -- (d) fuzz ----------------------------------------------------------------------------------
def _decline(world: SampleTraffic, req: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    o = world.outcome(req, req["candidates"][0]["route_id"], req["event_time"] + 50)
    o.update(approved=False, response_code=rng.choice(("05", "51")), failure_side="ISSUER")
    return o


def fuzz_messages(s: Settings, o: Options, now_ms: int) -> list[Sent]:
    """The fuzz run's messages in send order: valid requests and outcomes (a few with garbage
    headers) and `o.fuzz` malformed ones over every case, shuffled together."""
    rng = random.Random(o.seed + 4)
    codec = Codec(s)
    world = SampleTraffic(o.seed + 4, cards=300)
    topic = {"requests": s.topic_requests, "outcomes": s.topic_outcomes}
    msgs: list[Sent] = []
    valid = [world.next_request(now_ms + i) for i in range(o.fuzz_requests)]
    for i, req in enumerate(valid):
        hdrs = fuzz_cases.valid_headers(rng) if i % 20 == 0 else ()
        msgs.append(Sent(s.topic_requests, req["card_fingerprint"].encode(),
                         codec.request.encode(req), hdrs))  # fmt: skip
    for req in valid[: o.fuzz_outcomes]:
        route = rng.choice(req["candidates"])["route_id"]
        out = world.outcome(req, route, req["event_time"] + rng.randrange(10, 500))
        msgs.append(Sent(s.topic_outcomes, req["card_fingerprint"].encode(),
                         codec.outcome.encode(out)))  # fmt: skip
    sp = fuzz_cases.specs()
    for i, case in enumerate(fuzz_cases.plan(o.fuzz, rng)):
        req = dict(world.next_request(now_ms + i), request_id=f"fuzz-{i}", payment_id=f"fuzz-p{i}")
        # the card of a valid message: an accepted malformed outcome shows in its state
        req["card_fingerprint"] = rng.choice(valid)["card_fingerprint"] if valid else "card-0"
        t = fuzz_cases.Templates(codec, req, _decline(world, req, rng))
        b = fuzz_cases.CASES[case](rng, t)
        msgs.append(Sent(topic[sp[case].topic], b.key, b.value, b.headers, case,
                         req["request_id"]))  # fmt: skip
    rng.shuffle(msgs)
    return msgs


def fuzz(bootstrap: str, run_dir: Path, o: Options, say: Say) -> Result:
    name = "fuzz"
    t_start = time.monotonic()
    dep = Deployment(bootstrap, run_dir, name, o.partitions)
    say(name, f"deployment {dep.name}: starting the worker")
    dep.start(0, o.ready_timeout)
    w = dep.workers[0]
    pid = w.pid
    loop = ClosedLoop(dep.settings, 0, o.seed + 4, outcomes=False).start()
    msgs = fuzz_messages(dep.settings, o, _now_ms())
    codec = Codec(dep.settings)
    prod = kafka_io.LedgerProducer(dep.settings)
    for m in msgs:
        if m.case is None and m.topic == dep.settings.topic_requests:
            rid = codec.request.decode(m.value)["request_id"]
            loop.expect(rid)
        prod.send(m)
    left_unsent = prod.flush(120)
    n_bad = sum(m.case is not None for m in msgs)
    say(name, f"sent {len(msgs)} messages ({n_bad} malformed, {left_unsent} unsent); "
              f"waiting for every valid request's decision")  # fmt: skip
    crashes = 0
    try:
        deadline = time.monotonic() + min(o.drain_timeout, 240.0)  # a crash loop never drains
        while time.monotonic() < deadline:
            left = loop.wait_drained(min(5.0, max(0.1, deadline - time.monotonic())))
            if left == 0:
                break
            if not w.running and crashes < o.max_crash_restarts:
                crashes += 1
                code = w.proc.returncode if w.proc is not None else None
                say(name, f"the worker died (crash {crashes}, exit {code}): restarting it to "
                          "measure the rest")  # fmt: skip
                dep.start(0, o.ready_timeout)
        time.sleep(2.0)
        left = loop.undecided()
        say(name, f"{left} valid requests undecided; {loop.status()}")
        # no agent crash: the same process still decides fresh requests
        after = SampleTraffic(o.seed + 40, cards=50)
        fresh = [after.next_request(_now_ms()) for _ in range(50)]
        for r in fresh:
            loop.send_request(r)
        still = loop.wait_drained(60) == 0 and w.running and w.pid == pid and crashes == 0
        say(name, f"fresh requests after the fuzz decided: {still}")
        v = verify(
            dep.settings, prod.sent, say, name, w.port, o.state_cards, o.seed, o.settle_timeout
        )
        traces = w.log.read_text(errors="replace").count("Traceback")
    finally:
        loop.close()
        dep.stop_all()
    dl = v.dead
    wrong = {c: r for c, r in dl.cases.items() if r.right < r.sent}
    bad_cases = ", ".join(
        f"{c} {r.right}/{r.sent}" + (f" got {r.wrong}" if r.wrong else "")
        + (f" {r.missing} none" if r.missing else "") + (f" {r.decided} decided" if r.decided
                                                          else "")
        for c, r in sorted(wrong.items())
    )  # fmt: skip
    d = v.decisions
    checks = [
        Check("malformed dead-lettered with the right reason",
              f"{dl.right}/{dl.injected} ({dl.right_pct:.1f}%)", "100%",
              dl.right == dl.injected),
        Check("valid requests decided", f"{d.decided}/{d.requests}", "all", d.lost == 0),
        Check("no crash (the same process decides after)",
              f"{crashes} process crashes" if crashes else str(still), "True", still),
        Check("dead-letter headers kept as sent", f"{dl.headers_kept}/{dl.headers_checked}",
              "all", dl.headers_kept == dl.headers_checked),
        Check("authpilot.* headers the worker's own", f"{dl.own_headers_ok}/"
              f"{dl.own_headers_checked}", "all", dl.own_headers_ok == dl.own_headers_checked),
        Check("values kept", f"{dl.values_kept}/{dl.values_checked}", "all",
              dl.values_kept == dl.values_checked),
        Check("oversized truncated + original size", f"{dl.oversized_truncated}+"
              f"{dl.oversized_size_recorded}/{dl.oversized_checked}", "all",
              dl.oversized_checked > 0 and dl.oversized_truncated == dl.oversized_checked
              == dl.oversized_size_recorded),
        Check("valid messages dead-lettered", str(sum(dl.unexpected.values())), "0",
              not dl.unexpected),
        Check("disagreeing duplicates", str(d.disagreeing_ids), "0", d.disagreeing_ids == 0),
        Check("RetryDecisions for malformed outcomes", str(v.retries.unexpected), "0",
              v.retries.unexpected == 0),
    ] + state_checks(v)  # fmt: skip
    happened = (f"{dl.injected} malformed over {len(dl.cases)} cases among {d.requests} valid "
                f"requests and {v.valid_outcomes} outcomes: {dl.right} dead-lettered with the "
                f"expected reason; by reason {dl.by_reason}; valid decided {d.decided}/"
                f"{d.requests}; wrong or missing: {bad_cases or 'none'}; {traces} tracebacks "
                f"in the worker log; {crashes} worker crashes (restarted)")  # fmt: skip
    if v.state is not None and v.state.error is None:
        happened += f"; state: {v.state.mismatching}/{v.state.cards} cards differ"
    return Result(name, f"fuzz: {dl.injected} malformed among valid requests and outcomes",
                  happened, checks, {"verified": v, "tracebacks": traces},
                  time.monotonic() - t_start)  # fmt: skip


# -- (e) redelivered and out-of-order outcomes ----------------------------------------------------
def redelivery(bootstrap: str, run_dir: Path, o: Options, say: Say) -> Result:
    name = "redelivery"
    t_start = time.monotonic()
    rng = random.Random(o.seed + 5)
    dep = Deployment(bootstrap, run_dir, name, o.partitions)
    s = dep.settings
    say(name, f"deployment {dep.name}: starting the worker")
    dep.start(0, o.ready_timeout)
    w = dep.workers[0]
    codec = Codec(s)
    world = SampleTraffic(o.seed + 5, cards=max(10, o.redelivered))
    n = 3 * o.redelivered
    now = _now_ms() - 3_600_000  # an hour of history, every outcome within any sane skew
    reqs = [world.next_request(now + i * 10_000) for i in range(n)]
    outs = []
    for r in reqs:
        out = world.outcome(r, rng.choice(r["candidates"])["route_id"], r["event_time"] + 200)
        if rng.random() < 0.5:  # plenty of declines: each needs exactly one RetryDecision
            out.update(approved=False, response_code=rng.choice(("05", "51")),
                       failure_side="ISSUER", initiator="MIT", three_ds=False)  # fmt: skip
        outs.append(out)
    prod = kafka_io.LedgerProducer(s)
    loop = ClosedLoop(s, 0, o.seed + 5, outcomes=False).start()
    for r in reqs:
        loop.send_request(r)
    # outcomes out of event-time order (shuffled), a third of them twice more, later
    first = list(outs)
    rng.shuffle(first)
    again = [x for x in outs[: o.redelivered] for _ in range(2)]
    rng.shuffle(again)
    for x in first + again:
        prod.send(Sent(s.topic_outcomes, x["card_fingerprint"].encode(), codec.outcome.encode(x)))
    far = None
    if o.outlier:
        far = dict(outs[0], request_id="chaos-far-future", payment_id="chaos-far-future",
                   event_time=outs[0]["event_time"] + fuzz_cases.HUNDRED_YEARS_MS,
                   approved=False, response_code="05", failure_side="ISSUER")  # fmt: skip
    if far is not None:
        prod.send(Sent(s.topic_outcomes, far["card_fingerprint"].encode(),
                       codec.outcome.encode(far), case="out.time_future_100y",
                       request_id=far["request_id"]))  # fmt: skip
    # and after it, outcomes that an outlier would have made look "old"
    tail = []
    for r in reqs[-max(1, o.redelivered // 2) :]:
        t = dict(r, request_id=r["request_id"] + "-late", payment_id=r["payment_id"] + "-late")
        tail.append(world.outcome(t, t["candidates"][0]["route_id"], t["event_time"] + 400))
    for x in tail:
        prod.send(Sent(s.topic_outcomes, x["card_fingerprint"].encode(), codec.outcome.encode(x)))
    prod.flush(60)
    say(name, f"{n} requests, {len(first) + len(tail)} outcomes, {len(again)} redeliveries, one "
              "outcome 100 years ahead")  # fmt: skip
    try:
        left = loop.wait_drained(
            o.drain_timeout, quiet=2.0, progress=lambda m: say(name, m), stall=o.drain_stall
        )
        say(name, f"{left} undecided; {loop.status()}")
        v = verify(dep.settings, prod.sent, say, name, w.port, max(o.state_cards, 1000), o.seed,
                   o.settle_timeout)  # fmt: skip
    finally:
        loop.close()
        dep.stop_all()
    far_case = v.dead.cases.get("out.time_future_100y")
    far_ok = far is None or (far_case is not None and far_case.right == 1)
    rc = v.retries
    checks = [
        Check("RetryDecision per decline", f"{rc.exactly_one}/{rc.declines} exactly one, "
              f"{rc.extra} extra, {rc.missing} none", "exactly one",
              rc.missing == 0 and rc.extra == 0),
        Check("RetryDecision for the far-future outcome", str(rc.unexpected), "0",
              rc.unexpected == 0),
        Check("far-future outcome dead-lettered", "yes" if far_ok else
              f"no ({far_case.wrong if far_case else '?'})", "invalid_field", far_ok),
        Check("lost", str(v.decisions.lost), "0", v.decisions.lost == 0),
    ] + state_checks(v)  # fmt: skip
    happened = (f"{len(first)} outcomes sent out of order, {o.redelivered} of them 3 times, "
                f"{'one dated 100 years ahead, ' if far else ''}then {len(tail)} more: "
                f"RetryDecisions {rc.exactly_one}/"
                f"{rc.declines} declines exactly one, {rc.extra} extra, {rc.missing} missing, "
                f"{rc.unexpected} for the outlier; far-future outcome "
                f"{'dead-lettered' if far_ok else 'accepted'}")  # fmt: skip
    if v.state is not None:
        happened += (
            f"; state: {v.state.mismatching}/{v.state.cards} cards differ from the replay"
            if v.state.error is None
            else f"; state: {v.state.error}"
        )
        if v.state.features:
            happened += " (" + ", ".join(list(v.state.features)[:4]) + ")"
    return Result(name, "redelivered (x3), out-of-order and 100-years-ahead outcomes", happened,
                  checks, {"verified": v}, time.monotonic() - t_start)  # fmt: skip


SCENARIOS = ("kill", "broker", "failover", "fuzz", "redelivery")


def run(names: list[str], settings: Settings, bootstrap: str, run_dir: Path, o: Options,
        say: Say) -> list[Result]:  # fmt: skip
    """Run the named scenarios in order; one that raises becomes a failed row, not a crash."""
    results = []
    for n in names:
        say(n, "start")
        try:
            if n == "kill":
                res = kill_loop(bootstrap, run_dir, o, say)
            elif n == "broker":
                res = broker_kill(settings, run_dir, o, say)
            elif n == "failover":
                res = failover(bootstrap, run_dir, o, say)
            elif n == "fuzz":
                res = fuzz(bootstrap, run_dir, o, say)
            elif n == "redelivery":
                res = redelivery(bootstrap, run_dir, o, say)
            else:
                raise ValueError(f"unknown scenario {n!r}: one of {SCENARIOS}")
        except Exception as exc:
            say(n, f"scenario error: {type(exc).__name__}: {exc}")
            res = Result(n, n, f"the scenario could not finish: {type(exc).__name__}: {exc}",
                         [Check("scenario finished", "no", "yes", False)])  # fmt: skip
        say(n, f"done in {res.seconds:.0f} s: {len(res.failed)} target(s) missed")
        results.append(res)
    return results


def options(**changes: Any) -> Options:
    return replace(Options(), **changes)

"""Chaos suite (issue 12): under a steady ~5,000 simulated samples/s and live RTMP publishing, kill the sink,
PostgreSQL, the API and the auto-shutdown agent in turn. Nothing is lost or stored twice, a busy machine is never
stopped, and every recovery is timed: the numbers are printed at the end of the run (whatever `-s` says), kept
as the `chaos` property of the final test and written to `chaos-results.json` in the run's temp directory.

The tests run in file order on one platform; the last one settles the accounts of everything before it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import suppress
from datetime import timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from backend.vm.policy import Policy
from backend.vm.state import Event, FileStore
from tests.chaos_stack import (
    BUSY_HOST,
    GPUS,
    INTERVAL_S,
    ChaosStack,
    ChaosSummary,
    blind_host_signals,
    now,
    produced,
    timed,
)
from tests.nginx_rtmp import UPDATE_TIMEOUT_S, tools_missing
from tests.telemetry_sink.conftest import stored_once

pytestmark = pytest.mark.skipif(bool(tools_missing()), reason=f"needs {', '.join(tools_missing())}")

COUNTDOWN_HOST = "chaos-countdown"
IDLE_S, WARN_S, POLL_S = 10, 8, 2.0
# A longer gap in watching than this restarts the idle clock (the policy's default tolerance).
TOLERANCE_S = Policy(poll_seconds=POLL_S).tolerance.total_seconds()
STOPS = ("would_stop", "stopped", "stop_failed", "stop_aborted", "stop_cancelled")


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory,
          request: pytest.FixtureRequest) -> Iterator[ChaosStack]:
    chaos = ChaosStack(tmp_path_factory.mktemp("chaos"), kafka_bootstrap)
    request.config.pluginmanager.register(ChaosSummary(chaos), "chaos-summary")
    try:
        began = time.monotonic()
        chaos.start()
        chaos.record("startup", steady_after_s=chaos.caught_up_after(now(), since=began, timeout=120))
        yield chaos
    finally:
        chaos.close()


def _rows(stack: ChaosStack) -> int:
    row = stack.query("SELECT count(*) AS n FROM gpu_metrics")
    assert row is not None, "the database is down"
    return row["n"]


def test_sink_kill9_and_restart_catches_up(stack: ChaosStack) -> None:
    sink = stack.children["sink"]
    sink.kill9()
    try:
        time.sleep(0.5)
        stored_at_kill = _rows(stack)
        time.sleep(2.0)
        assert _rows(stack) == stored_at_kill  # really down: nothing is stored while the load goes on
    finally:
        restarted_at, restarted = now(), time.monotonic()
        sink.start()
    stack.record("sink", down_s=2.5, caught_up_s=stack.caught_up_after(restarted_at, since=restarted))


def test_postgres_stop_and_restart_loses_nothing_and_keeps_the_live_publisher(stack: ChaosStack) -> None:
    outage_s = 2.0 * UPDATE_TIMEOUT_S  # nginx asks on_update at least once meanwhile
    stack.pg.halt()
    try:
        time.sleep(outage_s)
        down = stack.query("SELECT 1 AS one") is None
        survivors = {name: child.running() for name, child in stack.children.items()}
    finally:
        stack.pg.resume()
    resumed_at, resumed = now(), time.monotonic()
    assert down
    assert all(survivors.values()), survivors  # sink, API, producer and agent rode out the outage
    publishing = timed(stack.publish_accepted, 60, what="a publish to be accepted", interval=0.2, since=resumed)
    ingest = stack.caught_up_after(resumed_at, since=resumed)
    assert stack.live.live(), "the live publisher was dropped during the outage: doubt must never kick"
    assert "<name>chaos-live</name>" in stack.nginx.stat_xml()
    stack.record("postgres", down_s=outage_s, caught_up_s=ingest, publish_accepted_s=publishing)


def test_api_kill9_refuses_publishes_until_restarted(stack: ChaosStack) -> None:
    timed(lambda: "<name>chaos-live</name>" in stack.nginx.stat_xml(), 30, what="the live stream on /stat")
    api = stack.children["api"]
    api.kill9()
    try:
        dropped = timed(lambda: not stack.live.live(), UPDATE_TIMEOUT_S + 10, what="nginx to drop the live stream")
        refused = [stack.publish_accepted(api_up=False) for _ in range(2)]
    finally:
        restarted = time.monotonic()
        api.start()
    assert refused == [False, False]  # nginx cannot reach on_publish: fail closed
    recovery = timed(stack.publish_accepted, 90, what="a publish to be accepted again", interval=0.2, since=restarted)
    stack.live.start()
    timed(lambda: "<name>chaos-live</name>" in stack.nginx.stat_xml(), 30, what="the live stream back on /stat")
    stack.record("api", live_dropped_s=dropped, refused_while_down=len(refused), publish_accepted_s=recovery)


def _events(store: FileStore) -> list[Event]:
    return list(reversed(store.events(COUNTDOWN_HOST, 500)))


def _kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def test_agent_kill9_mid_countdown_never_stops_without_a_warning(stack: ChaosStack) -> None:
    """After a restart the agent warns again before any stop: a quick restart keeps the idle clock and warns again
    (the stop never sooner than announced, nor than a full warning period after the new warning); an outage longer
    than the poll tolerance restarts the idle clock, and a new warning comes before any stop."""
    store = FileStore(stack.root / "countdown-state.json")
    # On a state file, not the database: only the test's kills and clock drive this countdown.
    agent = stack.child("agent-countdown", "autoshutdown", "run", "--state-file", str(store.path), "--host",
                        COUNTDOWN_HOST, "--poll-seconds", str(POLL_S), "--idle-seconds", str(IDLE_S), "--warn-seconds",
                        str(WARN_S), "--min-uptime-seconds", "0", "--no-ssh", "--action", "dry-run",
                        env=blind_host_signals(), database=False).start()
    timed(lambda: "warning_issued" in _kinds(_events(store)), 60, what="the first warning")
    announced = store.load(COUNTDOWN_HOST).stop_at
    assert announced is not None

    agent.kill9()  # mid-countdown; back at once
    last_seen, restarted_at = store.evaluations(COUNTDOWN_HOST, 1)[0].at, now()
    agent.start()
    quick = timed(lambda: store.evaluations(COUNTDOWN_HOST, 1)[0].at > restarted_at, 60, what="a new evaluation")
    blind = (store.evaluations(COUNTDOWN_HOST, 1)[0].at - last_seen).total_seconds()
    assert blind < TOLERANCE_S, f"the restart took {blind:.1f} s: too slow to count as a quick one"
    timed(lambda: any(k in STOPS for k in _kinds(_events(store))), IDLE_S + WARN_S + 30, what="the stop")
    events = _events(store)
    stop = next(e for e in events if e.kind in STOPS)
    assert _kinds(events)[:3] == ["warning_issued", "warning_issued", "would_stop"]  # warned again, no cancel
    rewarned = events[1]
    assert stop.at >= announced  # a restart never shortens a countdown
    assert stop.at - rewarned.at >= timedelta(seconds=WARN_S - 0.01)  # and the new warning gets its full period

    timed(lambda: _kinds(_events(store)).count("warning_issued") == 3, IDLE_S + 30, what="the next countdown")
    agent.kill9()  # mid-countdown; down longer than the tolerance this time
    last_seen = store.evaluations(COUNTDOWN_HOST, 1)[0].at
    time.sleep(max(0.0, (last_seen + timedelta(seconds=TOLERANCE_S + 1) - now()).total_seconds()))
    before = len(_events(store))
    restarted_at = now()
    agent.start()
    slow = timed(lambda: store.evaluations(COUNTDOWN_HOST, 1)[0].at > restarted_at, 60, what="a new evaluation")
    warned = timed(lambda: "warning_issued" in _kinds(_events(store)[before:]), IDLE_S + 30, what="a new warning")
    after = _events(store)[before:]
    first_warning = _kinds(after).index("warning_issued")
    assert not any(k in STOPS for k in _kinds(after)[:first_warning])  # no stop before the new warning
    assert {"idle_clock_restarted", "warning_cancelled"} <= set(_kinds(after)[:first_warning])
    new_stop_at = store.load(COUNTDOWN_HOST).stop_at
    assert new_stop_at is not None and new_stop_at - after[first_warning].at >= timedelta(seconds=WARN_S - 0.01)
    assert agent.stop() == 0
    stack.record("agent", quick_restart_first_poll_s=quick, quick_restart_unwatched_s=blind,
                 long_outage_first_poll_s=slow,
                 new_warning_after_restart_s=slow + warned)


def test_nothing_lost_duplicated_or_falsely_stopped(stack: ChaosStack,
                                                    record_property: pytest.RecordProperty) -> None:
    busy = stack.children["agent-busy"]
    assert busy.running(), busy.log()[-2000:]
    assert busy.stop() == 0  # before the workload ends, or its probe would rightly call the machine idle
    stack.live.stop()
    producer = stack.children["producer"]
    assert producer.stop(timeout=60) == 0, producer.log()[-2000:]
    sent = produced(producer.log())
    with suppress(AssertionError):  # whatever is missing then is counted below
        timed(lambda: _rows(stack) >= sent, 120, what="the sink to store everything produced", interval=0.5)
    sink = stack.children["sink"]
    assert sink.stop(timeout=60) == 0, sink.log()[-2000:]

    with psycopg.connect(stack.settings.database_url, row_factory=dict_row) as db:
        totals = stored_once(db)
        # The simulator is deterministic: one sample per GPU every INTERVAL_S, so each GPU's distinct times must
        # fill its span without a hole.
        series = db.execute(
            """SELECT count(*) AS gpus, coalesce(sum(n), 0)::bigint AS distinct_samples, count(*) FILTER (
                   WHERE n <> round(extract(epoch FROM last - first) / %s) + 1) AS with_holes
               FROM (SELECT count(DISTINCT time) AS n, min(time) AS first, max(time) AS last FROM gpu_metrics
                     GROUP BY gpu_uuid) per_gpu""", (INTERVAL_S,)).fetchone()
        agent = db.execute(
            """SELECT count(*) FILTER (WHERE kind = 'warning_issued') AS warnings,
                      count(*) FILTER (WHERE kind = ANY(%s)) AS stops
               FROM vm_events WHERE host = %s""", (list(STOPS), BUSY_HOST)).fetchone()
        polls = db.execute("SELECT count(*) AS n, count(*) FILTER (WHERE decision <> 'active') AS not_busy "
                           "FROM vm_evaluations WHERE host = %s", (BUSY_HOST,)).fetchone()
    stop_lines = len(stack.stops_file.read_text().splitlines()) if stack.stops_file.exists() else 0
    distinct = series["distinct_samples"]
    lost, duplicated = sent - distinct, max(totals.values()) - distinct  # a sample twice in a row or a rollup
    stack.record("totals", produced=sent, stored=distinct, lost=lost, duplicated=duplicated,
                 gpus=series["gpus"], gpus_with_holes=series["with_holes"], false_stops=agent["stops"] + stop_lines,
                 busy_agent_warnings=agent["warnings"], busy_agent_polls=polls["n"])
    record_property("chaos", stack.results)
    print(json.dumps(stack.results, indent=2))

    assert (lost, duplicated) == (0, 0), totals
    assert totals["1m"] == totals["1h"] == totals["rows"]
    assert (series["gpus"], series["with_holes"]) == (GPUS, 0)
    assert (agent["stops"], stop_lines, agent["warnings"]) == (0, 0, 0)
    assert polls["n"] > 0 and polls["not_busy"] == 0  # it kept watching and never thought the machine idle

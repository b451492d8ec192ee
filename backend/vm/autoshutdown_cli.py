"""`stream-platform autoshutdown`: run the agent, evaluate once, show status and history, snooze or skip."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from backend.cli_support import acting_principal, console, friendly_errors, print_json, to_jsonable, with_options
from backend.config import Settings, get_settings
from backend.errors import InvalidInput
from backend.parsing import parse_duration
from backend.vm import service
from backend.vm.agent import Outcome, build_agent
from backend.vm.replay import PolicyChanges, ReplayResult
from backend.vm.signals import Reading
from backend.vm.state import Evaluation

app = typer.Typer(help="VM inactivity auto-shutdown agent (docs/autoshutdown.md).", no_args_is_help=True)

_COLOURS = {"idle": "green", "active": "yellow", "unknown": "red", "n/a": "dim"}


def _seconds(text: str) -> float:
    """A policy duration option: `30m`, `1h30m` or plain seconds (backend.parsing)."""
    try:
        return parse_duration(text, what="duration", allow_zero=True, bare_seconds=True).total_seconds()
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc)) from None


def _duration(*names: str, help: str) -> Any:
    return typer.Option(*names, parser=_seconds, metavar="DURATION", help=f"{help} (e.g. 30m, 1h, or seconds)")


IdleSeconds = Annotated[float | None, _duration("--idle-seconds", "--threshold", help="idle this long before a stop")]
WarnSeconds = Annotated[float | None, _duration("--warn-seconds", "--warn", help="warn this long before a stop")]
MinUptime = Annotated[float | None, _duration("--min-uptime-seconds", "--min-uptime",
                                              help="never stop before this uptime")]
PollSeconds = Annotated[float | None, _duration("--poll-seconds", "--poll", help="time between evaluations")]
MaxAge = Annotated[float | None, _duration("--max-age-seconds", "--max-age",
                                          help="stop after this uptime even when busy")]
ActionKind = Annotated[str | None, typer.Option("--action", help="dry-run, command or gcp")]
StopCommand = Annotated[str | None, typer.Option("--command", help="the command of the `command` action")]
NeverStop = Annotated[list[str] | None, typer.Option("--never-stop", help="e.g. 'Mon-Fri 09:00-18:00 Europe/Berlin'")]
Probes = Annotated[list[str] | None, typer.Option("--probe", help="probe command: exit 0 active, 1 idle")]
Hooks = Annotated[list[str] | None, typer.Option("--hook", help="pre-stop hook command; failure aborts the stop")]
StatUrl = Annotated[str | None, typer.Option("--nginx-stat-url", help="nginx-rtmp /stat URL")]
StateFile = Annotated[Path | None, typer.Option("--state-file", help="state file when no DATABASE_URL is set")]
Host = Annotated[str | None, typer.Option("--host", help="this host's name in records")]
NoSsh = Annotated[bool, typer.Option("--no-ssh", help="ignore logged-in sessions")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]


def _settings(**overrides: Any) -> Settings:
    """Settings with the CLI's options (those given) laid over them, validated like the environment."""
    no_ssh = overrides.pop("no_ssh", False)
    given = {f"autoshutdown_{k}": v for k, v in overrides.items() if v is not None and v != []}
    if no_ssh:
        given["autoshutdown_ssh"] = False
    base = get_settings()
    return Settings.model_validate(base.model_dump() | given)


@dataclass(frozen=True)
class PolicyOptions:
    """The policy's options, each named after its `AUTOSHUTDOWN_*` setting; an option not given keeps the setting
    (environment, secrets.env). `evaluate` and `run` apply them, `replay` tries them on the stored history."""

    idle_seconds: IdleSeconds = None
    warn_seconds: WarnSeconds = None
    min_uptime_seconds: MinUptime = None
    poll_seconds: PollSeconds = None
    max_age_seconds: MaxAge = None
    never_stop: NeverStop = None

    def changes(self) -> PolicyChanges:
        return PolicyChanges(self.idle_seconds, self.warn_seconds, self.min_uptime_seconds, self.poll_seconds,
                             self.max_age_seconds, tuple(self.never_stop) if self.never_stop else None)


@dataclass(frozen=True)
class AgentOptions(PolicyOptions):
    """What `evaluate` and `run` take: the policy's options and the agent's own."""

    action: ActionKind = None
    command: StopCommand = None
    probes: Probes = None
    hooks: Hooks = None
    nginx_stat_url: StatUrl = None
    state_file: StateFile = None
    host: Host = None
    no_ssh: NoSsh = False

    def settings(self) -> Settings:
        return _settings(**vars(self))


def _evaluation_json(outcome: Outcome) -> dict[str, Any]:
    return to_jsonable(Evaluation.of(outcome.host, outcome.decision)) | {
        "events": list(outcome.decision.events),
        "stop": to_jsonable(outcome.stop) if outcome.stop else None,
    }


def _signals_table(readings: list[Reading] | list[dict[str, Any]]) -> Table:
    table = Table("signal", "state", "evidence")
    for reading in readings:
        r = reading if isinstance(reading, dict) else to_jsonable(reading)
        table.add_row(r["signal"], f"[{_COLOURS.get(r['state'], 'white')}]{r['state']}[/]", r["evidence"])
    return table


def _print_evaluation(host: str, at: datetime, decision: str, reasons: list[str], signals: list[Any]) -> None:
    console.print(f"[bold]{host}[/] {at:%Y-%m-%d %H:%M:%S} UTC: [bold]{decision}[/]")
    console.print(_signals_table(signals))
    for reason in reasons:
        console.print(f"  • {reason}", highlight=False)


@app.command()
@friendly_errors
@with_options(AgentOptions)
def evaluate(options: AgentOptions, as_json: AsJson = False) -> None:
    """Run one evaluation (and the stop, if one is due), record it and print it."""
    outcome = build_agent(options.settings()).evaluate()
    if as_json:
        print_json(_evaluation_json(outcome))
        return
    d = outcome.decision
    _print_evaluation(outcome.host, d.at, d.kind, list(d.reasons), list(d.readings))
    if outcome.stop:
        console.print(f"stop: [bold]{outcome.stop.kind}[/] {outcome.stop.detail.get('detail', '')}", highlight=False)


@app.command()
@friendly_errors
@with_options(AgentOptions)
def run(options: AgentOptions) -> None:
    """Run the agent until SIGTERM or Ctrl-C: evaluate every poll, warn, and stop the machine when due."""
    agent = build_agent(options.settings())
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    agent.run(stop)


@app.command()
@friendly_errors
def status(
    host: Host = None, state_file: StateFile = None, events: int = typer.Option(10, help="recent events to show"),
    as_json: AsJson = False,
) -> None:
    """The countdown, the latest evaluation with its per-signal reasons, and recent events."""
    settings = _settings(state_file=state_file)
    current = service.agent_status(acting_principal(), host, events=events, settings=settings)
    if as_json:
        print_json({
            "host": current.host, "state": current.state.to_json(), "seconds_left": current.seconds_left(),
            "latest": current.latest, "events": current.events,
        })
        return
    if current.latest is None:
        console.print(f"{current.host}: no evaluation recorded yet (is `autoshutdown run` running?)")
    else:
        e = current.latest
        _print_evaluation(e.host, e.at, e.decision, e.reasons, e.signals)
    if current.state.stop_at:
        console.print(f"stop announced for {current.state.stop_at:%H:%M:%S} UTC ({current.seconds_left():.0f} s left)")
    for event in current.events:
        console.print(f"  {event.at:%Y-%m-%d %H:%M:%S} {event.kind} {event.detail.get('detail', '')}", highlight=False)


@app.command()
@friendly_errors
def history(
    host: Host = None, state_file: StateFile = None, limit: int = typer.Option(20, help="evaluations to show"),
    as_json: AsJson = False,
) -> None:
    """Recent evaluations, newest first."""
    rows = service.history(acting_principal(), host, limit, settings=_settings(state_file=state_file))
    if as_json:
        print_json(rows)
        return
    table = Table("at (UTC)", "decision", "why")
    for row in rows:
        table.add_row(f"{row.at:%m-%d %H:%M:%S}", row.decision, row.reasons[-1] if row.reasons else "")
    console.print(table)


@app.command()
@friendly_errors
def snooze(
    minutes: float = typer.Argument(..., help="hold the stop this many minutes beyond the announced time"),
    host: Host = None, state_file: StateFile = None,
) -> None:
    """Postpone the auto-shutdown (operator+, audited)."""
    state = service.snooze(acting_principal(), minutes * 60, host, settings=_settings(state_file=state_file))
    until = state.snoozed_until or datetime.now(UTC)
    console.print(f"snoozed: no stop before {until:%Y-%m-%d %H:%M:%S} UTC")


@app.command()
@friendly_errors
def skip(host: Host = None, state_file: StateFile = None) -> None:
    """Skip this countdown: a full idle period must pass again (operator+, audited)."""
    service.skip(acting_principal(), host, settings=_settings(state_file=state_file))
    console.print("skipped: the idle clock starts again")


@app.command()
@friendly_errors
@with_options(PolicyOptions)
def replay(
    options: PolicyOptions,
    since: str = typer.Option("30d", "--since", help="replay the evaluations of this last span, e.g. 30d"),
    host: Host = None,
    stops: bool = typer.Option(False, "--stops", help="list every replayed stop"),
    as_json: AsJson = False,
) -> None:
    """What-if: replay the stored evaluations under the current policy and under the options given, per VM."""
    result = service.replay_policy(acting_principal(), parse_duration(since, what="--since"), options.changes(),
                                   host, settings=get_settings())
    if as_json:
        print_json({"start": result.start, "end": result.end, "assumption": result.assumption,
                    "difference": result.difference(),
                    **{name: _replay_json(run) for name, run in (("current", result.current),
                                                                 ("candidate", result.candidate))}})
        return
    console.print(f"replayed {result.start:%Y-%m-%d %H:%M} – {result.end:%Y-%m-%d %H:%M} UTC")
    table = Table("VM", "evaluations", "stops now → what-if", "hours off", "saved $", "regret")
    for now, then in zip(result.current.hosts, result.candidate.hosts, strict=True):
        table.add_row(now.host, str(now.evaluations), f"{len(now.stops)} → {len(then.stops)}",
                      f"{now.stopped_hours:.1f} → {then.stopped_hours:.1f}",
                      f"{now.saved_usd:.2f} → {then.saved_usd:.2f}", f"{now.regret} → {then.regret}")
    a, b = result.current, result.candidate
    table.add_row("[bold]total[/]", "", f"{a.stops} → {b.stops}", f"{a.stopped_hours:.1f} → {b.stopped_hours:.1f}",
                  f"{a.saved_usd:.2f} → {b.saved_usd:.2f}", f"{a.regret} → {b.regret}")
    console.print(table)
    if stops:
        for h in b.hosts:
            for s in h.stops:
                mark = " [red]regret[/]" if s.regret else ""
                console.print(f"  {h.host} {s.at:%m-%d %H:%M} → {s.until:%m-%d %H:%M} ({s.hours:.1f} h){mark}")
    console.print(f"assumption: {result.assumption}", highlight=False)


def _replay_json(run: ReplayResult) -> dict[str, Any]:
    hosts = [to_jsonable(h) | {"regret": h.regret} for h in run.hosts]
    return {"policy": run.policy, "totals": run.totals(), "hosts": hosts}

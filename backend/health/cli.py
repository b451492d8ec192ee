"""`stream-platform health evaluate|status|show|alerts|ack|rules|train|predict`."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import typer
from rich.table import Table

from backend.cli_support import acting_principal, console, friendly_errors, print_json, progress_bar
from backend.config import get_settings
from backend.health import evaluator, service
from backend.health.alerts import ALERT_STATES
from backend.health.risk.predict import predict_fleet
from backend.health.rules import RULE_IDS
from backend.health.xid import CATALOG
from backend.parsing import parse_duration

app = typer.Typer(help="GPU health: rules, alerts and failure risk.", no_args_is_help=True)
log = logging.getLogger(__name__)
_STYLE = {"healthy": "green", "warning": "yellow", "critical": "bold red", "unknown": "magenta",
          "open": "red", "acknowledged": "yellow", "resolved": "green"}


def _styled(value: str) -> str:
    return f"[{_STYLE.get(value, 'white')}]{value}[/]"


@app.command("evaluate")
@friendly_errors
def evaluate(
    loop: bool = typer.Option(False, "--loop", help="keep evaluating until interrupted"),
    every: str = typer.Option(None, "--every", help="interval with --loop, e.g. 30s (default HEALTH_EVALUATE_EVERY_S)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Evaluate every GPU, store statuses, open/resolve alerts and notify the webhook."""
    settings = get_settings()

    def show(summary: evaluator.EvaluationSummary) -> None:
        if as_json:
            print_json(summary)
            return
        console.print(
            f"{summary.evaluated_at:%H:%M:%S} {summary.gpus} GPUs: {summary.healthy} healthy, "
            f"{_styled('warning')} {summary.warning}, {_styled('critical')} {summary.critical}, "
            f"{_styled('unknown')} {summary.unknown} · alerts opened {summary.opened}, reopened {summary.reopened}, "
            f"escalated {summary.escalated}, resolved {summary.resolved} · notified {summary.notified}"
            + (f" ([red]{summary.notify_pending} waiting for the webhook[/])" if summary.notify_pending else "")
            + f" · {summary.duration_s:.2f}s"
        )

    if not loop:
        show(evaluator.evaluate_once(settings))
        return
    every_s = (parse_duration(every, what="--every", bare_seconds=True).total_seconds() if every
               else settings.health_evaluate_every_s)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        evaluator.evaluate_loop(settings, every_s=every_s, stop=stop, on_summary=show)
    except KeyboardInterrupt:
        stop.set()


@app.command("status")
@friendly_errors
def status(
    state: str = typer.Option(None, "--status", help="healthy, warning, critical or unknown"),
    host: str = typer.Option(None, "--host"),
    model: str = typer.Option(None, "--model", help="a fragment of the model name, e.g. H100"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The fleet's latest health, worst first."""
    rows = service.fleet_health(acting_principal(), status=state, host=host, model=model)
    if as_json:
        print_json(rows)
        return
    table = Table("host", "gpu", "model", "status", "since", "findings")
    for r in rows:
        table.add_row(r.host, str(r.gpu_index), r.model or "?", _styled(r.status),
                      f"{r.status_since:%Y-%m-%d %H:%M}" if r.status_since else "",
                      "; ".join(f"{f.severity}: {f.title}" for f in r.findings))
    console.print(table)


@app.command("show")
@friendly_errors
def show(gpu_uuid: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """One GPU: status, findings with evidence and action, alerts, failure risk."""
    detail = service.gpu_detail(acting_principal(), gpu_uuid)
    if as_json:
        print_json(detail)
        return
    h = detail.health
    console.print(f"[bold]{h.gpu_uuid}[/] {h.host} GPU {h.gpu_index} ({h.model or '?'}): {_styled(h.status)}")
    for f in h.findings:
        console.print(f"  {_styled(f.severity)} [bold]{f.rule}[/] {f.title} since {f.since:%Y-%m-%d %H:%M:%S}")
        console.print(f"    evidence: {f.evidence}", highlight=False)
        console.print(f"    action: {f.action}", highlight=False)
    if detail.risk:
        r = detail.risk
        top = ", ".join(f"{c.feature}={c.value:g}" for c in r.top_features)
        console.print(f"  risk of a critical fault within {r.horizon_h} h: [bold]{r.probability:.0%}[/] "
                      f"(model {r.model_version}; drivers: {top or 'none'})")
    for a in detail.alerts:
        console.print(f"  alert #{a.id} {_styled(a.state)} {a.severity} {a.rule} opened {a.opened_at:%Y-%m-%d %H:%M}")


@app.command("alerts")
@friendly_errors
def alerts(
    state: list[str] = typer.Option(None, "--state", help=f"repeatable: {', '.join(ALERT_STATES)}"),
    severity: str = typer.Option(None, "--severity", help="warning or critical"),
    host: str = typer.Option(None, "--host"),
    gpu: str = typer.Option(None, "--gpu", help="GPU UUID"),
    limit: int = typer.Option(200, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Alerts, active first then newest."""
    rows = service.list_alerts(acting_principal(), states=tuple(state) if state else None, severity=severity,
                               host=host, gpu_uuid=gpu, limit=limit)
    if as_json:
        print_json(rows)
        return
    table = Table("id", "state", "severity", "host", "gpu", "rule", "title", "opened", "reopens", "ack by")
    for a in rows:
        table.add_row(str(a.id), _styled(a.state), _styled(a.severity), a.host, str(a.gpu_index), a.rule, a.title,
                      f"{a.opened_at:%Y-%m-%d %H:%M}", str(a.reopen_count), a.acknowledged_by or "")
    console.print(table)


@app.command("history")
@friendly_errors
def history(alert_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """One alert's timeline: opened, acknowledged, escalated, resolved, … and whether the webhook got each."""
    events = service.alert_history(acting_principal(), alert_id)
    if as_json:
        print_json(events)
        return
    table = Table("at", "event", "by", "why", "severity", "state", "webhook")
    for e in events:
        webhook = f"delivered {e.delivered_at:%H:%M:%S}" if e.delivered_at else f"pending ({e.attempts} tries)"
        table.add_row(f"{e.at:%Y-%m-%d %H:%M:%S}", e.kind, e.actor, e.reason, _styled(e.alert["severity"]),
                      _styled(e.alert["state"]), webhook)
    console.print(table)


@app.command("ack")
@friendly_errors
def ack(alert_id: int, note: str = typer.Option(None, "--note", help="why / who is on it")) -> None:
    """Acknowledge an open alert (operator or admin)."""
    alert = service.acknowledge(acting_principal(), alert_id, note)
    console.print(f"alert #{alert.id} acknowledged by {alert.acknowledged_by}")


@app.command("rules")
def rules(as_json: bool = typer.Option(False, "--json")) -> None:
    """The rules and the XID catalog they use."""
    if as_json:
        print_json({"rules": list(RULE_IDS), "xids": list(CATALOG.values())})
        return
    console.print("rules: " + ", ".join(RULE_IDS))
    table = Table("xid", "severity", "category", "meaning", "action")
    for x in CATALOG.values():
        table.add_row(str(x.code), _styled(x.severity), x.category, x.name, x.action)
    console.print(table)



@app.command("train")
@friendly_errors
def train(
    train_seeds: int = typer.Option(8, "--train-seeds", min=1, help="simulated fleets to train on"),
    test_seeds: int = typer.Option(4, "--test-seeds", min=1, help="held-out fleets to evaluate on"),
    hosts: int = typer.Option(3, "--hosts", min=1),
    gpus_per_host: int = typer.Option(8, "--gpus-per-host", min=1, max=16),
    hours: float = typer.Option(36.0, "--hours", min=6.0, help="simulated hours per fleet"),
    horizon: float = typer.Option(None, "--horizon", help="hours ahead (default HEALTH_RISK_HORIZON_H)"),
    out: Path = typer.Option(None, "--out", help="model directory (default HEALTH_MODEL_DIR)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Train the failure-risk model on simulated fleets with injected faults; writes risk-vN.joblib."""
    from backend.health.risk.training import FleetSpec, train_and_evaluate  # the only import of the simulator

    settings = get_settings()
    spec = FleetSpec(hosts=hosts, gpus_per_host=gpus_per_host, hours=hours)
    seeds = list(range(1, train_seeds + 1)), list(range(1001, 1001 + test_seeds))
    with progress_bar("simulating fleets", train_seeds + test_seeds) as advance:
        _, report = train_and_evaluate(train_seeds=seeds[0], test_seeds=seeds[1],
                                       horizon_h=horizon or settings.health_risk_horizon_h, spec=spec,
                                       out_dir=out or settings.health_model_dir, advance=advance)
    if as_json:
        print_json(report)
        return
    table = Table("held-out seeds", "precision", "recall", "PR-AUC", "positives / rows")
    rows = (("model", report.model), ("rule baseline", report.baseline),
            ("model, fault already begun", report.model_started),
            ("rule baseline, fault already begun", report.baseline_started))
    for name, s in rows:
        table.add_row(name, f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.pr_auc:.3f}", f"{s.positives} / {s.rows}")
    console.print(table)
    console.print(f"wrote {report.path} (horizon {report.horizon_h:g} h, threshold {report.threshold}, "
                  f"{report.train_rows} training rows, {report.seconds:g} s)")


@app.command("predict")
@friendly_errors
def predict(as_json: bool = typer.Option(False, "--json")) -> None:
    """Score every GPU with the newest risk model and store the predictions."""
    predictions = predict_fleet(get_settings())
    if as_json:
        print_json(predictions)
        return
    table = Table("host", "gpu", "model", "risk", "rules", "top drivers")
    for p in predictions:
        drivers = ", ".join(f"{c.feature}={c.value:.3g} (+{c.delta:.0%})" for c in p.top_features)
        table.add_row(p.host, str(p.gpu_index), p.model or "?", f"{p.probability:.0%}", f"{p.baseline_score:g}",
                      drivers)
    console.print(table)
    console.print(f"{len(predictions)} GPUs scored with {predictions[0].model_version if predictions else '-'}")

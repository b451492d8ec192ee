"""`stream-platform vm`: VM status and start/stop (GCP or this host), and the host's Docker containers."""

from __future__ import annotations

import sys
import time

import typer
from rich.table import Table

from backend.cli_support import acting_principal, console, err_console, friendly_errors, print_json
from backend.parsing import parse_duration
from backend.vm import service

app = typer.Typer(help="VM status and start/stop; containers on this host.", no_args_is_help=True)
_ZONE_HELP = "the instance's zone (default: GCP_ZONE, else looked up)"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    return f"{minutes // 1440}d {minutes // 60 % 24}h" if minutes >= 1440 else f"{minutes // 60}h {minutes % 60}m"


@app.command("list")
@friendly_errors
def list_vms(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """The platform's VMs (VM_PROVIDER): status, machine type, GPUs, last start, labels, auto-shutdown state."""
    vms = service.list_vms(acting_principal())
    if as_json:
        print_json(vms)
        return
    table = Table("name", "zone", "status", "machine type", "GPUs", "last start", "labels", "auto-shutdown")
    for vm in vms:
        table.add_row(
            vm.name, vm.zone, vm.status, vm.machine_type, ", ".join(vm.gpus) or "-",
            f"{vm.last_start:%Y-%m-%d %H:%M}" if vm.last_start else "-",
            ", ".join(f"{k}={v}" for k, v in vm.labels.items()) or "-", vm.autoshutdown or "-",
        )
    console.print(table)


@app.command()
@friendly_errors
def start(name: str, zone: str = typer.Option(None, help=_ZONE_HELP)) -> None:
    """Start a VM (operator+, audited)."""
    with err_console.status(f"starting {name}…"):
        where = service.start_vm(acting_principal(), name, zone)
    console.print(f"started {name} in {where}")


@app.command()
@friendly_errors
def stop(name: str, zone: str = typer.Option(None, help=_ZONE_HELP)) -> None:
    """Stop a VM (operator+, audited)."""
    with err_console.status(f"stopping {name}…"):
        where = service.stop_vm(acting_principal(), name, zone)
    console.print(f"stopped {name} in {where}")


@app.command()
@friendly_errors
def containers(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Containers on this host (DOCKER_HOST): status, health, uptime, restart count."""
    found = service.list_containers(acting_principal())
    if as_json:
        print_json(found)
        return
    table = Table("name", "image", "status", "health", "uptime", "restarts", "id")
    for c in found:
        table.add_row(c.name, c.image, c.status, c.health or "-", _age(c.uptime_seconds), str(c.restart_count), c.id)
    console.print(table)


@app.command()
@friendly_errors
def logs(name: str, tail: int = typer.Option(200, help="lines from the end")) -> None:
    """A container's recent stdout and stderr (operator+)."""
    sys.stdout.write(service.container_logs(acting_principal(), name, tail))


@app.command()
@friendly_errors
def restart(name: str) -> None:
    """Restart a container (operator+, audited)."""
    with err_console.status(f"restarting {name}…"):
        info = service.restart_container(acting_principal(), name)
    console.print(f"restarted {info.name}: {info.status}, {info.restart_count} restart(s)")


@app.command("start-scheduled")
@friendly_errors
def start_scheduled(
    every: str | None = typer.Option(None, "--every", help="repeat every interval (e.g. 30s) until stopped"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Start the VMs of scheduled streams due within STREAMS_SCHEDULE_LEAD_SECONDS (audited); once, or as a loop."""
    interval = parse_duration(every, what="--every", bare_seconds=True).total_seconds() if every else None
    while True:
        started = service.start_scheduled_vms()
        if as_json:
            print_json(started)
        for s in [] if as_json else started:
            outcome = f"[red]not started: {s.error}[/] (next try {s.retry_at:%H:%M:%S} UTC)" if s.error else "started"
            console.print(f"{s.vm} for {s.name!r} (schedule {s.schedule_id}, {s.starts_at:%Y-%m-%d %H:%M} UTC): "
                          f"{outcome}", highlight=False)
        if interval is None:
            return
        time.sleep(interval)

"""The ``edgesim drill`` and ``edgesim stress`` commands (logic in edgesim.drill and
edgesim.stress)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from edgesim._clitypes import STDOUT, FiniteFloatRange, OutputFile, load_topology_arg, write_result
from edgesim.errors import EdgesimError


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """A duration such as 60s, 1.5m or 90 (seconds)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from edgesim._units import parse_duration

        if isinstance(value, int | float):
            seconds = float(value)
        else:
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        if seconds <= 0:
            self.fail(f"expected a duration > 0, got {value!r}", param, ctx)
        return seconds


DURATION = DurationType()


def _write(path: str | None, doc: Any) -> None:
    if not path:
        return
    from edgesim._signals import held

    with held():  # a stop now would lose the report: it is written first
        try:
            write_result(path, json.dumps(doc, indent=2) + "\n")
        except OSError as exc:
            raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None


INTERRUPTED = "interrupted before the load started: every process it started is stopped; no report"
PARTIAL = "interrupted: every process it started is stopped; the report is partial"


def _run(fn: Any) -> Any:
    """``trio.run(fn)`` with SIGTERM and SIGHUP stopping it as Ctrl-C does; an error is
    one line. Stopped before ``fn`` had anything to report: one line, exit 130. (A
    report of a stopped run comes through ``fn``'s own ``on_interrupt``.)"""
    import trio

    from edgesim._signals import stoppable
    from edgesim._supervisor import SupervisorError

    try:
        return trio.run(stoppable, fn)  # SIGTERM, SIGHUP: as Ctrl-C, the processes stopped
    except (EdgesimError, SupervisorError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:  # click would say "Aborted!" and exit 1
        return None


def _make_workdir(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Create --workdir now: a path that cannot be a folder is one error line."""
    if value is not None:
        if not value:  # "" is the current folder: the run's files would land in it
            raise click.BadParameter("expected a folder name, got ''")
        try:
            Path(value).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.BadParameter(f"cannot create {value}: {exc.strerror or exc}") from None
    return value


@click.command("drill", short_help="Run a topology's faults for real against separate processes.")
@click.argument("topology", default="crash-drill")
@click.option(
    "--duration",
    type=DURATION,
    help="Wall time the topology's traffic is scaled into (default: its traffic.duration).",
)
@click.option("--rate", type=FiniteFloatRange(0), help="Total requests/s (default: peak_rps; 0: flat out).")
@click.option("--connections", type=click.IntRange(1, 1024), default=16, show_default=True)
@click.option(
    "--flush-interval",
    type=FiniteFloatRange(0.1, 60),
    default=1.0,
    show_default=True,
    help="Seconds between collections of the edges' counters (the most a killed edge loses).",
)
@click.option("--ignore-down-for", is_flag=True, help="Restart crashed edges after the backoff only.")
@click.option(
    "--workdir", type=click.Path(file_okay=False), callback=_make_workdir, help="Keep sites and logs here."
)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(stdout=True),
    help="Write the report as JSON ('-': to standard output, the summary to standard error).",
)
def drill_command(
    topology: str,
    duration: float | None,
    rate: float | None,
    connections: int,
    flush_interval: float,
    ignore_down_for: bool,
    workdir: str | None,
    json_path: str | None,
) -> None:
    """Start TOPOLOGY's origin and edge nodes as processes on loopback, send load from
    a separate process whose clients fail over to another node of their region, else
    to the nearest region ([network.region_latency]), and run the topology's [faults]
    for real: kill -9 of edges, origin stopped or stalled. Prints every restart, failed,
    retried and failed-over requests, cold-cache spikes and stale serving."""
    from edgesim.drill import DrillOptions, run_drill, summary_lines

    topo = load_topology_arg(topology)
    opts = DrillOptions(
        duration=duration,
        rate=rate,
        connections=connections,
        flush_interval=flush_interval,
        honor_down_for=not ignore_down_for,
    )
    stopped: list[dict[str, Any]] = []
    report = _run(
        lambda: run_drill(
            topo,
            opts,
            workdir=workdir,
            progress=lambda m: click.echo(m, err=True),
            on_interrupt=stopped.append,
        )
    )
    if report is None:
        report = _interrupted(stopped)
    _write(json_path, report)
    for line in summary_lines(report):
        click.echo(line, err=json_path == STDOUT)
    if report.get("partial"):
        click.echo(PARTIAL, err=True)
        sys.exit(130)


def _interrupted(stopped: list[dict[str, Any]]) -> dict[str, Any]:
    """The partial report of a stopped run; none (stopped while it started): one line,
    exit 130."""
    if not stopped:
        click.echo(INTERRUPTED, err=True)
        sys.exit(130)
    return stopped[0]


@click.command("stress", short_help="Full-speed live traffic plus gc, reloads and threaded matching.")
@click.argument("topology", default="demo")
@click.option("--duration", type=DURATION, default="60s", show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True, help="Matcher threads.")
@click.option("--connections", type=click.IntRange(1, 1024), default=32, show_default=True)
@click.option(
    "--baseline",
    is_flag=True,
    help="First run the same load without gc thread, reloads and matcher (throughput ratio).",
)
@click.option(
    "--workdir", type=click.Path(file_okay=False), callback=_make_workdir, help="Keep sites and logs here."
)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(stdout=True),
    help="Write the result as JSON ('-': to standard output, the summary to standard error).",
)
def stress_command(
    topology: str,
    duration: float,
    threads: int,
    connections: int,
    baseline: bool,
    workdir: str | None,
    json_path: str | None,
) -> None:
    """Run TOPOLOGY live at the highest rate the machine allows, with forced garbage
    collection, rule-set reloads during traffic and matching from worker threads. Ends
    with a summary line (crashes, errors, throughput); exits 1 if anything crashed."""
    from edgesim.stress import run_stress, summary_line

    topo = load_topology_arg(topology)
    stopped: list[dict[str, Any]] = []
    result = _run(
        lambda: run_stress(
            topo,
            duration,
            threads=threads,
            connections=connections,
            workdir=workdir,
            baseline=baseline,
            progress=lambda m: click.echo(m, err=True),
            on_interrupt=stopped.append,
        )
    )
    if result is None:
        result = _interrupted(stopped)
    _write(json_path, result)
    for d in result["crash_details"]:
        click.echo(f"crash: {d}", err=True)
    if result.get("matcher_log_tail"):
        click.echo(result["matcher_log_tail"], err=True)
    click.echo(summary_line(result), err=json_path == STDOUT)
    if result.get("partial"):
        click.echo(PARTIAL, err=True)
        sys.exit(130)
    if result["crashes"]:
        sys.exit(1)

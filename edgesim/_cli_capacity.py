"""``edgesim sweep`` and ``edgesim calibrate``: the click commands (no logic of their own).

The library code lives in :mod:`edgesim.sweep` and :mod:`edgesim.calibrate`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edgesim._clitypes import OutputFile, distinct_outputs, folder_name


class _Fail(click.ClickException):
    """One error line and exit status 1."""


def _problems(problems: Any) -> None:
    for p in problems:
        click.echo(str(p), err=True)
    sys.exit(1)


def _executor(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from edgesim.sweep import check_executor

    try:
        return check_executor(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("sweep", short_help="Run a grid of topology parameters x seeds.")
@click.argument("spec", metavar="SPEC.toml")
@click.option(
    "--executor",
    default="local",
    show_default=True,
    callback=_executor,
    metavar="local|dask-local|tcp://HOST:PORT",
    help="local: a process pool; dask-local: a Dask cluster on loopback; tcp://...: a Dask "
    "scheduler (both need edgesim[dask]).",
)
@click.option(
    "--workers", type=click.IntRange(1, 1024), help="Worker processes (local, dask-local); default: CPUs."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    callback=folder_name,
    help="Write DIR/sweep.csv and DIR/sweep.json (and resume from them).",
)
@click.option("--csv", "csv_path", type=OutputFile(), help="Write (and resume from) this CSV.")
@click.option("--json", "json_path", type=OutputFile(), help="Write (and resume from) this JSON.")
@click.option("--quiet", is_flag=True, help="No progress lines and no table.")
def sweep_command(
    spec: str,
    executor: str,
    workers: int | None,
    out_dir: str | None,
    csv_path: str | None,
    json_path: str | None,
    quiet: bool,
) -> None:
    """Run every cell of the grid in SPEC.toml with each of its seeds and report one
    row per run (docs/sweep.md). Rows already finished in the output files are kept
    and skipped, so an interrupted sweep resumes. Exits 1 when the spec is bad or a
    run failed twice (its row says why)."""
    from edgesim.sweep import Outputs, SweepError, load_spec, run_sweep

    if out_dir is not None:
        if csv_path or json_path:
            raise click.UsageError("give either --out DIR or --csv/--json FILE")
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _Fail(f"cannot create {out_dir}: {exc.strerror or exc}") from None
        # the files in DIR are checked as --csv and --json are: a FIFO, a folder or a
        # folder that cannot be written is refused now, not after the first run
        check = OutputFile()
        try:
            csv_path = check.convert(str(Path(out_dir) / "sweep.csv"), None, None)
            json_path = check.convert(str(Path(out_dir) / "sweep.json"), None, None)
        except click.BadParameter as exc:
            raise click.BadParameter(exc.message, param_hint="'--out'") from None
    distinct_outputs(("--csv", csv_path), ("--json", json_path))
    try:
        sweep_spec = load_spec(spec)
    except SweepError as exc:
        _problems(exc.problems)

    def progress(row: dict[str, Any], done: int, total: int) -> None:
        if quiet:
            return
        params = " ".join(f"{k}={row.get(k)}" for k in result_params)
        what = (
            f"p99 {row.get('p99_ms')} ms, hit {row.get('object_hit_ratio')}, {row.get('wall_seconds')} s"
            if row["status"] == "ok"
            else f"FAILED after {row['attempts']} attempts: {row['error']}"
        )
        click.echo(f"[{done}/{total}] {params} seed={row['seed']}: {what}", err=True)

    result_params = [q.name for q in sweep_spec.grid]
    try:
        result = run_sweep(
            sweep_spec,
            executor=executor,
            workers=workers,
            outputs=Outputs(csv_path, json_path),
            on_row=progress,
        )
    except SweepError as exc:
        _problems(exc.problems)
    except (RuntimeError, OSError) as exc:
        raise _Fail(f"sweep: {exc}") from None
    except KeyboardInterrupt:
        click.echo("sweep interrupted: finished rows are in the output files; rerun to resume", err=True)
        sys.exit(130)
    if not quiet:
        _print_table(result.rows, list(result.params))
        click.echo(
            f"{len(result.rows) - result.foreign} runs: {result.ran} run now, {result.kept} kept from "
            f"the output files, {result.failed} failed"
            + (f"; {result.foreign} rows of other sweeps kept as they were" if result.foreign else ""),
            err=True,
        )
    if result.failed:
        click.echo(f"{result.failed} runs failed twice; their rows say why (status, error)", err=True)
        sys.exit(1)


def _print_table(rows: list[dict[str, Any]], params: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=None if sys.stdout.isatty() else 160)
    t = Table(title="Sweep", title_justify="left")
    cols = [
        *params,
        "seed",
        "status",
        "p50_ms",
        "p99_ms",
        "object_hit_ratio",
        "byte_hit_ratio",
        "origin_rps",
        "edge_utilisation_max",
        "cost",
    ]
    heads = {
        "p50_ms": "p50 ms",
        "p99_ms": "p99 ms",
        "object_hit_ratio": "hit",
        "byte_hit_ratio": "byte hit",
        "origin_rps": "origin rps",
        "edge_utilisation_max": "edge util max",
    }
    for c in cols:
        t.add_column(heads.get(c, c), justify="left" if c in ("status", *params) else "right")
    for r in rows:
        t.add_row(*("-" if r.get(c) is None or r.get(c) == "" else str(r.get(c)) for c in cols))
    con.print(t)


@click.command("calibrate", short_help="Measure the edge's CPU time per request; write a cost model.")
@click.option(
    "--topology",
    "topology_arg",
    default="demo",
    show_default=True,
    metavar="FILE",
    help="Measure rule matching for each site of this topology (a file or bundled name).",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=OutputFile(),
    help="The cost file (TOML) to write; other profiles already in it are kept.",
)
@click.option(
    "--profile",
    default="default",
    show_default=True,
    help="Name of the hardware profile this machine stands for (the model's name in the file).",
)
@click.option(
    "--samples",
    type=click.IntRange(5, 1_000_000),
    default=1000,
    show_default=True,
    help="Requests per outcome class and round.",
)
@click.option(
    "--rounds", type=click.IntRange(1, 50), default=3, show_default=True, help="Median of this many."
)
@click.option(
    "--connections",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Client connections sending at once (1: one request at a time, an idle node).",
)
@click.option("--json", "as_json", is_flag=True, help="Also print the figures as JSON.")
def calibrate_command(
    topology_arg: str,
    out_path: str,
    profile: str,
    samples: int,
    rounds: int,
    connections: int,
    as_json: bool,
) -> None:
    """Measure the CPU time per request of a real edge node on this machine (live, on
    loopback, in front of a real origin process): a memory hit, a disk hit, a miss, a
    304 revalidation, a redirect, and rule matching for each site of --topology.
    Writes them to --out as the cost model of --profile (docs/calibrate.md); a topology
    uses it with `calibration = "FILE"` in [profiles.NAME] or an edge group."""
    import json

    from edgesim._topoload import _REGION_NAME, load_topology, resolve_topology_arg
    from edgesim.calibrate import CalibrationError, calibrate, write_cost_file
    from edgesim.errors import TopologyError

    if not _REGION_NAME.fullmatch(profile):
        raise click.BadParameter(
            f"expected letters, digits, '-' and '_', got {profile!r}", param_hint="--profile"
        )
    try:
        topo = load_topology(resolve_topology_arg(topology_arg))
    except TopologyError as exc:
        _problems(exc.problems)
    if Path(out_path).exists():
        from edgesim._costs import read_cost_file

        try:
            read_cost_file(Path(out_path))
        except TopologyError as exc:
            _problems(exc.problems)
    from edgesim._signals import interrupted_by_stop_signals

    try:
        # SIGTERM, SIGHUP: as Ctrl-C (the origin process it starts is stopped)
        with interrupted_by_stop_signals():
            model, info, details = calibrate(
                topo,
                profile=profile,
                samples=samples,
                rounds=rounds,
                connections=connections,
                progress=lambda m: click.echo(m, err=True),
            )
        write_cost_file(out_path, model, info)
    except CalibrationError as exc:
        raise _Fail(f"calibration failed: {exc}") from None
    except OSError as exc:
        raise _Fail(f"cannot write {out_path}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        click.echo(f"interrupted: the origin it started is stopped; {out_path} is not written", err=True)
        sys.exit(130)
    us = 1e6
    click.echo(f"profile {profile} on {info['machine']}: CPU per request (rule matching apart)")
    for name, value in zip(
        ("memory hit", "disk hit", "miss", "revalidation (304)", "redirect"),
        model.outcome_times(),
        strict=True,
    ):
        click.echo(f"  {name:<20} {value * us:9.1f} us")
    for site, value in model.rules:
        click.echo(f"  rules of {site:<11} {value * us:9.2f} us")
    click.echo(f"wrote {out_path}")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "profile": profile,
                    **info,
                    "service_time": dict(
                        zip(
                            ("hit_memory", "hit_disk", "miss", "revalidate", "redirect"),
                            model.outcome_times(),
                            strict=True,
                        )
                    ),
                    "rules": dict(model.rules),
                    "details": details,
                },
                indent=2,
            )
        )

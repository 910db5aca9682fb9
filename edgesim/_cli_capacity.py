"""``edgesim sweep`` and ``edgesim calibrate``: the click commands (no logic of their own).

The library code lives in :mod:`edgesim.sweep` and :mod:`edgesim.calibrate`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click


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
    help="Write DIR/sweep.csv and DIR/sweep.json (and resume from them).",
)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write (and resume from) this CSV.")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write (and resume from) this JSON."
)
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
        csv_path = str(Path(out_dir) / "sweep.csv")
        json_path = str(Path(out_dir) / "sweep.json")
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

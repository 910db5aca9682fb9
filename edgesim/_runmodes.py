"""``edgesim run``'s modes and engines: option types, checks, and the dispatch.

* ``--mode virtual --engine fast`` (default): :func:`edgesim.engine.simulate`.
* ``--mode virtual --engine trio``: :func:`edgesim.trioengine.simulate_trio`.
* ``--mode live``: :func:`edgesim.live.run_live` on a window of the traffic.

``--window START,DURATION`` and ``--rate-scale X`` cut the topology with
:func:`edgesim._traffic.window_topology` in every mode, so ``--mode virtual`` with the
live run's window and scale is its comparison (docs/live.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from edgesim.metrics import RunResult
    from edgesim.topology import Topology

__all__ = ["RATE_SCALE", "WINDOW", "comparison_line", "prepare", "run"]


class _Window(click.ParamType):  # type: ignore[type-arg]
    """``START,DURATION`` with durations as in topology files (``10m,60s``)."""

    name = "START,DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[float, float]:
        if isinstance(value, tuple):
            return value
        from edgesim._units import parse_duration

        start, sep, length = str(value).partition(",")
        if not sep:
            self.fail(f"expected START,DURATION (such as 10m,60s), not {value!r}", param, ctx)
        try:
            return parse_duration(start.strip()), parse_duration(length.strip())
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _RateScale(click.ParamType):  # type: ignore[type-arg]
    """A number > 0, or ``auto``."""

    name = "X|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float | None:
        if value is None or isinstance(value, float):
            return value
        if str(value).strip().lower() == "auto":
            return None
        try:
            x = float(value)
        except ValueError:
            self.fail(f"expected a number > 0 or 'auto', not {value!r}", param, ctx)
        if not 0 < x < float("inf"):
            self.fail(f"expected a number > 0 or 'auto', not {value!r}", param, ctx)
        return x


WINDOW = _Window()
RATE_SCALE = _RateScale()


def prepare(
    topology: Topology,
    *,
    mode: str,
    engine: str,
    window: tuple[float, float] | None,
    rate_scale: float | None,
    sample_rate: float,
) -> tuple[Topology, dict[str, Any]]:
    """Check the option combination and cut the topology's window.

    Returns:
        The topology to run and the ``meta`` fields describing the cut (``window``,
        ``rate_scale``; empty when the whole topology runs).

    Raises:
        click.UsageError: options that don't go together, or a window outside the
            traffic (one line).
    """
    from edgesim._topoload import MAX_PEAK_RPS
    from edgesim._traffic import window_topology
    from edgesim.live import DEFAULT_WINDOW, auto_rate_scale

    if mode == "live" and engine != "fast":
        raise click.UsageError("--engine applies to --mode virtual (live mode runs the real shells)")
    if sample_rate < 1.0 and (mode == "live" or engine == "trio"):
        raise click.UsageError("--sample-rate works with --mode virtual --engine fast only")
    if mode == "live":
        if window is None:
            tr = topology.traffic
            start = min(tr.warmup, max(0.0, tr.duration - DEFAULT_WINDOW))
            window = (start, min(DEFAULT_WINDOW, tr.duration))
        if rate_scale is None:
            rate_scale = auto_rate_scale(topology)
    elif rate_scale is None:
        rate_scale = 1.0
    if topology.traffic.peak_rps * rate_scale > MAX_PEAK_RPS:
        raise click.UsageError(
            f"--rate-scale {rate_scale:g}: a peak of {topology.traffic.peak_rps * rate_scale:.3g} "
            f"requests/s (at most {MAX_PEAK_RPS:g})"
        )
    if window is None and rate_scale == 1.0:
        return topology, {}
    if window is None:
        window = (0.0, topology.traffic.duration)
    try:
        cut = window_topology(topology, window[0], window[1], rate_scale)
    except ValueError as exc:
        raise click.UsageError(f"--window/--rate-scale: {exc}") from None
    return cut, {"window": [window[0], window[1]], "rate_scale": rate_scale}


def run(
    topology: Topology,
    *,
    mode: str,
    engine: str,
    seed: int | None,
    sample_rate: float,
    progress: Callable[[float, float, int], None] | None,
    sample_keys: float | None = None,
    sample_seed: int | None = None,
    sample_thin: float | None = None,
) -> RunResult:
    """Run a prepared topology in the chosen mode and engine.

    Error handling:
        ``ValueError`` (the engines' topology errors) and
        :class:`~edgesim.live.LiveError` propagate for the CLI to word.
    """
    if mode == "live":
        from edgesim.live import run_live

        return run_live(topology, seed=seed, progress=progress)
    if engine == "trio":
        from edgesim.trioengine import simulate_trio

        return simulate_trio(topology, seed=seed, progress=progress)
    from edgesim.engine import DEFAULT_SAMPLE_KEYS, THIN_ARRIVALS, simulate

    keys = DEFAULT_SAMPLE_KEYS if sample_keys is None else sample_keys
    thin = THIN_ARRIVALS if sample_thin is None else sample_thin
    return simulate(
        topology,
        seed=seed,
        progress=progress,
        sample_rate=sample_rate,
        sample_keys=keys,
        sample_seed=sample_seed,
        sample_thin=thin,
    )


def comparison_line(report: dict[str, Any]) -> str | None:
    """One line comparing a live report with its embedded virtual run (None otherwise)."""
    c = report.get("meta", {}).get("virtual_comparison")
    if not c:
        return None
    h, o = c["object_hit_ratio"], c["origin_requests_per_second"]

    def num(x: Any, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    return (
        f"live vs virtual (same window, rate and seed): object hit ratio {num(h['live'], '.4f')} vs "
        f"{num(h['virtual'], '.4f')} (difference {num(h['difference'], '+.4f')}); origin requests/s "
        f"{num(o['live'], '.2f')} vs {num(o['virtual'], '.2f')} ({num(o['relative_difference'], '+.1%')})"
    )

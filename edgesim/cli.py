"""The ``edgesim`` command line.

Callbacks parse and validate arguments, call library functions and print; they hold no
logic of their own. Domain errors become one-line messages with a non-zero exit.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

import edgesim
from edgesim import _runmodes
from edgesim._clitypes import (
    STDOUT,
    FiniteFloatRange,
    InputFile,
    OutputFile,
    distinct_outputs,
    folder_name,
    make_output_folder,
    write_result,
)
from edgesim._compiled import cores_description
from edgesim._signals import held, interrupted_by_stop_signals
from edgesim.errors import EdgesimError, TraceError

# Exit codes: 0 fine, 1 the checked input has errors, 2 usage errors (click's own).
EXIT_FINDINGS = 1


class CliError(click.ClickException):
    """A domain error shown as one line (``Error: ...``) with exit status 1."""


_NODE_NAME = re.compile(r"[A-Za-z0-9._~-]{1,255}")


def _fail(message: str) -> NoReturn:
    raise CliError(message)


def _load(path: str, **options: Any) -> Any:
    """Rules from a `_redirects` file, a netlify.toml, or a site directory."""
    from edgesim.redirects import RuleSet

    try:
        p = Path(path)
        if p.is_dir():
            return RuleSet.from_site(p, **options)
        return RuleSet.from_file(p, **options)
    except EdgesimError as exc:
        _fail(str(exc))


def _serve_until_stopped(serve: Any, host: str, port: int) -> None:
    """Run a blocking server; a bind failure (possibly inside Trio's exception groups)
    becomes one error line, Ctrl-C a quiet exit."""
    try:
        serve()
    except BaseExceptionGroup as group:
        os_error = _first(group, OSError)
        if os_error is None:
            raise
        _fail(f"cannot listen on {host}:{port}: {os_error.strerror or os_error}")
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        pass


def _first(group: BaseExceptionGroup[Any], kind: type[OSError]) -> OSError | None:
    """The first ``kind`` exception inside a (nested) exception group."""
    for exc in group.exceptions:
        if isinstance(exc, kind):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first(exc, kind)
            if found is not None:
                return found
    return None


def _pairs(values: tuple[str, ...], sep: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, ok, val = v.partition(sep)
        if not ok or not name:
            raise click.BadParameter(f"expected NAME{sep}VALUE, got {v!r}", param_hint=what)
        out[name.strip()] = val.strip() if sep == ":" else val
    return out


class _Commands(click.Group):
    """The command group. Ctrl-C (or SIGTERM, SIGHUP where a command turns them into
    Ctrl-C) that a command does not handle itself, such as one while it starts up, gives
    one line and exit status 130, the shells' status for an interrupt, rather than
    click's ``Aborted!`` and status 1, which scripts would take for a failure."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(130) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    edgesim.__version__,
    prog_name="edgesim",
    message=f"%(prog)s, version %(version)s ({cores_description()})",
)
def cli() -> None:
    """Simulate a CDN edge network: plan its capacity, test edge software."""


@cli.group("redirects")
def redirects_group() -> None:
    """Check, try and benchmark Netlify-style redirect and rewrite rules."""


@redirects_group.command("check", short_help="Validate and lint rule files.")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--strict", is_flag=True, help="Exit non-zero on warnings too.")
@click.option("--json", "as_json", is_flag=True, help="Print diagnostics as JSON lines.")
def check_command(files: tuple[str, ...], strict: bool, as_json: bool) -> None:
    """Validate FILES (`_redirects`, netlify.toml, or site directories).

    Each diagnostic is printed as FILE:LINE:COLUMN: SEVERITY: MESSAGE [CODE]. Exits 1
    when any file has an error (with --strict: an error or a warning).
    """
    errors = warnings = 0
    for f in files:
        rules = _load(f)
        for d in rules.lint():
            if as_json:
                click.echo(json.dumps(d.as_dict()))
            else:
                click.echo(str(d))
            errors += d.severity == "error"
            warnings += d.severity == "warning"
        if not as_json:
            click.echo(f"{f}: {len(rules)} rules", err=True)
        rules.close()
    click.echo(
        f"{_counted(errors, 'error')}, {_counted(warnings, 'warning')} in {_counted(len(files), 'file')}",
        err=True,
    )
    if errors or (strict and warnings):
        sys.exit(EXIT_FINDINGS)


@redirects_group.command("match", short_help="Show which rule a request matches.")
@click.argument("file", type=click.Path(dir_okay=True))
@click.argument("url", required=False)
@click.option("--country", help="Visitor country (ISO 3166-1 alpha-2).")
@click.option("--language", help="Visitor language tag (else from cookies/headers).")
@click.option("--cookie", "cookies", multiple=True, metavar="NAME=VALUE", help="A request cookie.")
@click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="A request header.")
@click.option("--jwt-secret", help="HS256 secret for Role= conditions.")
@click.option("--jwt-role-claim", default="app_metadata.authorization.roles", show_default=True)
@click.option(
    "--role", "roles", multiple=True, help="Mint an nf_jwt cookie with this role (needs --jwt-secret)."
)
# (a minted token expires an hour on: past year 9999, or so far that the hour is lost to
# rounding, no expiry check means anything)
@click.option(
    "--now", type=FiniteFloatRange(0, 253402300799), help="Unix time for JWT expiry checks (default: now)."
)
@click.option(
    "--requests",
    "requests_file",
    type=InputFile(),
    help="JSON lines of requests ({url, country, language, cookies, headers}); one JSON result per line "
    "(exit status 1 when a line could not be matched).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def match_command(
    file: str,
    url: str | None,
    country: str | None,
    language: str | None,
    cookies: tuple[str, ...],
    headers: tuple[str, ...],
    jwt_secret: str | None,
    jwt_role_claim: str,
    roles: tuple[str, ...],
    now: float | None,
    requests_file: Any,
    as_json: bool,
) -> None:
    """Match URL (or each request of --requests) against the rules in FILE."""
    import time

    from edgesim.redirects import mint_jwt

    if (url is None) == (requests_file is None):
        raise click.UsageError("give either URL or --requests FILE")
    if roles and not jwt_secret:
        raise click.BadParameter("--role needs --jwt-secret", param_hint="--role")
    rules = _load(file, jwt_secret=jwt_secret, jwt_role_claim=jwt_role_claim)
    cookie_map = _pairs(cookies, "=", "--cookie")
    header_map = _pairs(headers, ":", "--header")
    if roles:
        exp = (now if now is not None else time.time()) + 3600
        cookie_map["nf_jwt"] = mint_jwt(jwt_secret or "", list(roles), exp=exp, claim=jwt_role_claim)
    if url is not None:
        try:
            m = rules.match(
                url,
                country=country,
                language=language,
                cookies=cookie_map or None,
                headers=header_map or None,
                now=now,
            )
        except ValueError as exc:
            _fail(str(exc))
        if as_json:
            click.echo(json.dumps(_match_json(url, m, rules)))
        else:
            _print_match(url, m, rules)
        return
    bad = total = 0
    try:
        for lineno, line in enumerate(requests_file, 1):
            if not line.strip():
                continue
            result = _request_line(rules, line, lineno, requests_file.name, now)
            total += 1
            bad += "error" in result
            click.echo(json.dumps(result))
    except UnicodeDecodeError as exc:
        _fail(_not_utf8(requests_file.name, exc))
    if bad:  # every line has its result; the exit status says some were errors
        _fail(
            f'{requests_file.name}: {bad} of {total} request lines could not be matched (see their "error")'
        )


def _report_rule_problems(compiled: dict[str, Any], files: dict[str, list[str]]) -> None:
    """Print a ``--rules`` file's parse problems (its bad lines are skipped, as Netlify
    does) to standard error; fail when a site's files have problems and no rule at all."""
    for host, rules in compiled.items():
        for d in rules.diagnostics:
            click.echo(f"--rules {host}: {d}", err=True)
        if rules.errors and not len(rules):
            n = len(rules.errors)
            _fail(f"--rules {host}={'+'.join(files[host])}: no valid rule ({n} error{'s' * (n != 1)}, above)")


def _node_name(value: str) -> str:
    """A node name goes into every response's Via header: a token (RFC 9110 §5.6.2),
    restricted to what topologies name nodes with."""
    if not _NODE_NAME.fullmatch(value):
        raise click.BadParameter(f"{value!r}: expected letters, digits and . _ - ~ (1 to 255 characters)")
    return value


def _not_utf8(name: str, exc: UnicodeDecodeError) -> str:
    """One error line for a text file that is not UTF-8, with the first bad line's
    number when the file can be re-read."""
    from edgesim.traces import first_non_utf8_line

    line = first_non_utf8_line(name)
    return f"{name}{'' if line is None else f':{line}'}: not UTF-8 text ({exc.reason})"


# what a JSON value is, by the type json.loads gives it
_JSON_KINDS = {
    bool: "true or false",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def _request_line(rules: Any, line: str, lineno: int, name: str, now: float | None) -> dict[str, Any]:
    where = f"{name}:{lineno}"
    try:
        req = json.loads(line)
    except json.JSONDecodeError as exc:
        return {"line": lineno, "error": f"{where}: invalid JSON: {exc.msg}"}
    except RecursionError:  # json's recursive parser
        return {"line": lineno, "error": f"{where}: invalid JSON: arrays or objects nested too deeply"}
    if not isinstance(req, dict) or not isinstance(req.get("url"), str):
        return {"line": lineno, "error": f'{where}: expected an object with a string "url"'}
    kw: dict[str, Any] = {}
    for key, kind in (("country", str), ("language", str), ("cookies", dict), ("headers", dict)):
        v = req.get(key)
        if v is not None:
            if not isinstance(v, kind) or (
                isinstance(v, dict) and not all(isinstance(x, str) for x in v.values())
            ):
                expected = "a string" if kind is str else "an object of strings"
                got = _JSON_KINDS.get(type(v), "another value")
                if kind is dict and isinstance(v, dict):  # an object, with a value not a string
                    bad_kinds = {
                        _JSON_KINDS.get(type(x), "another value")
                        for x in v.values()
                        if not isinstance(x, str)
                    }
                    got = f"an object with {' and '.join(sorted(bad_kinds))} among its values"
                return {"line": lineno, "error": f'{where}: "{key}" must be {expected}, not {got}'}
            kw[key] = v
    try:
        m = rules.match(req["url"], now=now, **kw)
    except ValueError as exc:
        return {"line": lineno, "url": req["url"], "error": f"{where}: {exc}"}
    return {"line": lineno, **_match_json(req["url"], m, rules)}


def _match_json(url: str, m: Any, rules: Any) -> dict[str, Any]:
    if m is None:
        return {"url": url, "match": None}
    d = m.as_dict()
    d["text"] = rules.rule_text(m.rule)
    return {"url": url, "match": d}


def _print_match(url: str, m: Any, rules: Any) -> None:
    if m is None:
        click.echo(f"no rule matches {url}")
        return
    where = f"{m.source}"
    text = rules.rule_text(m.rule)
    if m.denied:
        click.echo(f"denied by {where}: {text}")
        click.echo("  status:   404 (no later rule matched; a site answers with its 404 page)")
        return
    kind = "redirect" if m.is_redirect else "proxy" if m.is_proxy else "rewrite"
    click.echo(f"{where}: {text}")
    click.echo(f"  status:   {m.status} ({kind}{', forced' if m.force else ''})")
    click.echo(f"  target:   {m.to}")
    click.echo(f"  location: {m.location}")
    if m.after_denial:
        click.echo("  note:     an earlier Role= rule denied this visitor")


@redirects_group.command("bench", short_help="Measure matches/s, native vs reference.")
@click.argument("file", type=click.Path(exists=True, dir_okay=True))
@click.option("--urls", "urls_file", type=InputFile(), help="URL mix, one per line (default: generated).")
@click.option(
    "--seconds",
    type=FiniteFloatRange(0.05, 600),
    default=1.0,
    show_default=True,
    help="Measuring time per figure.",
)
@click.option(
    "--reference/--no-reference",
    default=True,
    show_default=True,
    help="Also measure the pure-Python reference matcher.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench_command(file: str, urls_file: Any, seconds: float, reference: bool, as_json: bool) -> None:
    """Compile time and matches/s of the native and reference matchers on FILE."""
    from edgesim import rulebench

    urls = None
    if urls_file is not None:
        try:
            urls = [u.strip() for u in urls_file if u.strip()]
        except UnicodeDecodeError as exc:
            _fail(_not_utf8(urls_file.name, exc))
        if not urls:
            raise click.BadParameter("no URLs in the file", param_hint="--urls")
    try:
        result = rulebench.run(file, urls, seconds=seconds, reference=reference)
    except EdgesimError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(f"bad URL mix: {exc}")
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    n = result["native"]
    click.echo(
        f"{result['rules_file']}: {result['rules']} rules, {result['urls']} URLs "
        f"({result['matched_share']:.0%} match)"
    )
    click.echo(
        f"native     compile {n['compile_ms']:.2f} ms, "
        f"match_many {n['match_many_per_s']:,}/s (best {n['match_many_best_per_s']:,}), "
        f"match {n['match_per_s']:,}/s (best {n['match_best_per_s']:,}), {n['bytes_per_rule']} bytes/rule"
    )
    if "reference" in result:
        r = result["reference"]
        click.echo(f"reference  compile {r['compile_ms']:.2f} ms, match {r['match_per_s']:,}/s")
        click.echo(
            f"ratio      (medians) match_many {result['ratios']['match_many_vs_reference']}x, "
            f"match {result['ratios']['match_vs_reference']}x"
        )


class SizeType(click.ParamType):  # type: ignore[type-arg]
    """A byte size such as 512MB or 1GiB."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from edgesim._units import parse_size

        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()


@cli.group("edge")
def edge_group() -> None:
    """Run an edge node."""


@edge_group.command("serve", short_help="Run an edge node (HTTP/1.1) in front of an origin.")
@click.option(
    "--origin",
    "origin_spec",
    required=True,
    metavar="URL|embedded:DIR",
    help="Origin base URL (http://127.0.0.1:8080), or embedded:SITES_DIR to run the origin in-process.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8081, show_default=True, help="0 picks a free port."
)
@click.option(
    "--name",
    default="edge",
    show_default=True,
    callback=lambda ctx, param, v: _node_name(v),
    help="Node name (Via header, stats): letters, digits and . _ - ~ only.",
)
@click.option("--memory-cache", type=SIZE, default="256MB", show_default=True, help="Memory tier size.")
@click.option(
    "--disk-cache", metavar="DIR[:SIZE]", help="Disk tier (diskcache) directory and size (default 1GB)."
)
@click.option(
    "--rules",
    "rules",
    multiple=True,
    metavar="HOST=FILE",
    help="Rules for a site, for origins without manifests (no shadowing applies); repeat the host "
    "for its _redirects and its netlify.toml. Bad lines are skipped, each with a warning.",
)
@click.option("--no-manifests", is_flag=True, help="Do not ask the origin for site manifests.")
@click.option(
    "--shadow",
    "shadow_specs",
    multiple=True,
    metavar="reference|rules:HOST=FILE|origin:URL",
    help="Evaluate a candidate beside the primary and compare (docs/shadow.md).",
)
@click.option(
    "--rollout", type=FiniteFloatRange(0, 1), help="Hand this fraction of requests to the candidate."
)
@click.option("--shadow-timeout", metavar="DURATION", help="Longest wait for the candidate (default 50ms).")
@click.option("--shadow-samples", type=click.IntRange(0, 10_000), help="Mismatches kept (default 20).")
def edge_serve_command(
    origin_spec: str,
    host: str,
    port: int,
    name: str,
    memory_cache: int,
    disk_cache: str | None,
    rules: tuple[str, ...],
    no_manifests: bool,
    shadow_specs: tuple[str, ...],
    rollout: float | None,
    shadow_timeout: str | None,
    shadow_samples: int | None,
) -> None:
    """Serve an edge node until SIGTERM or Ctrl-C (in-flight requests are drained)."""
    import trio

    from edgesim._units import parse_duration, parse_size
    from edgesim.serve import build_node, make_origin, serve_edge

    disk = None
    if disk_cache is not None:
        path, _, size = disk_cache.partition(":")
        if not path.strip():
            raise click.BadParameter(f"expected DIR[:SIZE], got {disk_cache!r}", param_hint="--disk-cache")
        if os.path.exists(path) and not os.path.isdir(path):
            raise click.BadParameter(f"{path} exists and is not a directory", param_hint="--disk-cache")
        try:
            disk = (path, parse_size(size) if size else 10**9)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--disk-cache") from None
        if disk[1] <= 0:
            raise click.BadParameter(
                f"the disk tier's size must be above 0, got {size!r}", param_hint="--disk-cache"
            )
    from edgesim.shadow import site_rule_files

    try:
        rule_files = site_rule_files(rules)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--rules") from None
    if not origin_spec.startswith(("http://", "embedded:")):
        raise click.BadParameter("expected http://HOST:PORT or embedded:SITES_DIR", param_hint="--origin")
    if not origin_spec.removeprefix("embedded:").strip() and origin_spec.startswith("embedded:"):
        raise click.BadParameter("expected embedded:SITES_DIR, got no directory", param_hint="--origin")
    try:
        node = build_node(
            name=name, memory_bytes=memory_cache, disk=disk, rules=rule_files, manifests=not no_manifests
        )
        _report_rule_problems(node.config.rules, rule_files)
        try:
            origin = make_origin(origin_spec)
        except ValueError as exc:
            raise ValueError(f"--origin: {exc}") from None
        from edgesim._shadowlive import attach_shadow, parse_shadow_options

        try:
            timeout = None if shadow_timeout is None else parse_duration(shadow_timeout)
        except ValueError as exc:
            raise ValueError(f"--shadow-timeout: {exc}") from None
        shadow = parse_shadow_options(shadow_specs, rollout, timeout, shadow_samples)
        if shadow is not None:
            origin = attach_shadow(node, origin, shadow)
    except (EdgesimError, OSError, ValueError) as exc:
        _fail(str(exc))

    async def run() -> None:
        async def announce(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await serve_edge(node, origin, host=host, port=port, signals=True, task_status=task_status)

        async with trio.open_nursery() as nursery:
            bound = await nursery.start(announce)
            click.echo(f"edge {name} listening on http://{host}:{bound} (origin {origin_spec})", err=False)

    _serve_until_stopped(lambda: trio.run(run), host, port)


@cli.group("origin")
def origin_group() -> None:
    """Run an origin server."""


@origin_group.command("serve", short_help="Run the origin server for a sites directory.")
@click.option(
    "--sites",
    "sites_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Directory with one folder per site (named after its host).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0 picks a free port."
)
@click.option(
    "--concurrency",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Requests served at once (0: unlimited); the rest queue (modelled load).",
)
@click.option(
    "--max-queue",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Queued requests beyond which the origin answers 503 (0: unbounded).",
)
@click.option("--seed", type=int, help="Seed for modelled service times.")
def origin_serve_command(
    sites_dir: str, host: str, port: int, concurrency: int, max_queue: int, seed: int | None
) -> None:
    """Serve SITES until SIGTERM or Ctrl-C (in-flight requests are drained)."""
    from origin.core import SiteConfigError
    from origin.server import run as run_origin

    try:
        _serve_until_stopped(
            lambda: run_origin(
                sites_dir,
                host,
                port,
                concurrency=concurrency,
                max_queue=max_queue,
                seed=seed,
                announce=click.echo,
            ),
            host,
            port,
        )
    except SiteConfigError as exc:
        _fail(str(exc))


@cli.group("bench")
def bench_group() -> None:
    """Benchmarks (print JSON; never part of the tests)."""


@bench_group.command("edge", short_help="Edge node: core cost per decision and loopback throughput.")
@click.option(
    "--seconds",
    type=FiniteFloatRange(1, 300),
    default=5.0,
    show_default=True,
    help="Duration of each live run.",
)
@click.option("--connections", type=click.IntRange(1, 1024), default=32, show_default=True)
@click.option("--core-only", is_flag=True, help="Only the sans-IO core costs (no sockets).")
def bench_edge_command(seconds: float, connections: int, core_only: bool) -> None:
    """Cost per decision of the edge core (hit, miss), and requests/s, p50 and p99 on
    loopback for a bare Trio + h11 server, the edge's hit path, its miss path, and
    100 KiB hits. Load comes from wrk pinned to the other core when installed."""
    from edgesim import edgebench

    try:
        result = edgebench.run(seconds, connections, core_only, progress=lambda m: click.echo(m, err=True))
    except (RuntimeError, OSError) as exc:
        _fail(f"benchmark failed: {exc}")
    click.echo(json.dumps(result, indent=2))


@cli.command("replay", short_help="Replay a request trace through one cache.")
@click.argument("trace", type=click.Path())  # a folder: the reader says so, in one line
@click.option("--cache-size", type=SIZE, required=True, help="Cache capacity in bytes (e.g. 64MB, 1GiB).")
@click.option("--policy", type=click.Choice(["lru", "fifo"]), default="lru", show_default=True)
@click.option(
    "--format",
    "trace_format",
    type=click.Choice(["csv", "oracle-general"]),
    help="Trace format (default: by extension, else by content).",
)
@click.option(
    "--engine",
    type=click.Choice(["native", "python"]),
    default="native",
    show_default=True,
    help="The replay loop: the C one, or the reference Python one (same counts, slower).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def replay_command(
    trace: str, cache_size: int, policy: str, trace_format: str | None, engine: str, as_json: bool
) -> None:
    """Replay TRACE (CSV `time,key,size[,region,site]` or libCacheSim oracleGeneral)
    through one cache of --cache-size bytes; print the object and byte hit ratios."""
    from edgesim.replay import replay
    from edgesim.traces import read_trace

    try:
        requests = read_trace(trace, trace_format)
    except EdgesimError as exc:
        _fail(str(exc))
    try:
        result = replay(requests, cache_size, policy, engine=engine)
    except MemoryError:
        _fail(
            f"{trace}: out of memory while replaying it (the cache's objects do not fit): replay a part of it"
        )
    if as_json:
        click.echo(json.dumps({"trace": trace, **result.as_dict()}))
        return
    click.echo(f"requests        {result.requests:,} ({requests.n_objects:,} objects)")
    click.echo(f"cache           {policy}, {cache_size:,} bytes")
    click.echo(f"hit ratio       {result.hit_ratio:.4f} ({result.hits:,} hits)")
    click.echo(
        f"byte hit ratio  {result.byte_hit_ratio:.4f} ({result.hit_bytes:,} of {result.bytes:,} bytes)"
    )
    click.echo(f"replay rate     {result.rate:,.0f} requests/s ({result.engine})")


@bench_group.command("replay", short_help="Trace replay: requests/s per policy on a Zipf trace.")
# (the trace is generated in memory: about 50 bytes a request and 100 bytes an object)
@click.option(
    "--requests", "n_requests", type=click.IntRange(1000, 100_000_000), default=2_000_000, show_default=True
)
@click.option(
    "--objects", "n_objects", type=click.IntRange(1, 10_000_000), default=200_000, show_default=True
)
@click.option("--alpha", type=FiniteFloatRange(0, 3), default=0.9, show_default=True, help="Zipf skew.")
@click.option(
    "--cache-fraction",
    type=FiniteFloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="Cache size as a fraction of the working set.",
)
@click.option("--repeats", type=click.IntRange(1, 50), default=5, show_default=True)
@click.option(
    "--read",
    is_flag=True,
    help="Instead: reading speed of the trace as CSV and oracleGeneral files, plain and compressed.",
)
def bench_replay_command(
    n_requests: int, n_objects: int, alpha: float, cache_fraction: float, repeats: int, read: bool
) -> None:
    """Replay rate (requests/s, median and best) of each policy's native and Python
    loops on a generated Zipf trace, with a bare dict loop over the same trace as the
    same-process baseline.
    With --read: how fast the trace is read from each kind of file, against its plain
    file."""
    from edgesim.replay import bench, read_bench, zipf_trace

    if read:
        trace = zipf_trace(n_requests, n_objects, alpha)
        result = {"requests": n_requests, "repeats": repeats, "read": read_bench(trace, repeats)}
        click.echo(json.dumps(result, indent=2))
        return
    try:
        result = bench(n_requests, n_objects, alpha, cache_fraction, repeats)
    except RuntimeError as exc:
        _fail(str(exc))
    click.echo(json.dumps(result, indent=2))


from edgesim.simbench import engine_command, sampling_command  # noqa: E402

bench_group.add_command(engine_command)
bench_group.add_command(sampling_command)

# --- edgesim validate (topology files) -------------------------------------------


@cli.command("validate", short_help="Check topology files and report every problem.")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
def validate_command(files: tuple[str, ...]) -> None:
    """Check each topology FILE (or bundled topology name, such as `demo`) and print
    `FILE: ok (...)`, or one line per problem with its file, line, key path and what
    was expected. Exits 1 when any file has problems."""
    from edgesim._topoload import load_topology, resolve_topology_arg
    from edgesim.errors import TopologyError

    failed = False
    for arg in files:
        path = resolve_topology_arg(arg)
        try:
            topo = load_topology(path)
        except TopologyError as exc:
            # (the rule files and the trace are read once the file itself is right)
            failed = True
            for problem in exc.problems:
                click.echo(str(problem))
            continue
        errors = []
        if topo.traffic.trace is not None:
            from edgesim._tracetraffic import load_trace_traffic

            try:
                load_trace_traffic(topo)  # the trace's own problems (lines, names)
            except TraceError as exc:
                errors.append(f"{path}: traffic.trace: {exc}")
            except TopologyError as exc:
                errors += [str(problem) for problem in exc.problems]
        errors += _rule_errors(topo)
        if errors:
            failed = True
            for line in errors:
                click.echo(line)
            continue
        nodes = sum(r.edge.nodes for r in topo.regions)
        counts = ", ".join(
            (
                _counted(len(topo.regions), "region"),
                _counted(nodes, "node"),
                _counted(len(topo.sites), "site"),
            )
        )
        click.echo(f"{path}: ok ({counts})")
    if failed:
        sys.exit(EXIT_FINDINGS)


def _counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 (``1 region``, ``3 nodes``)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _rule_errors(topo: Any) -> list[str]:
    """Error diagnostics of the rule files a topology's sites name (as `redirects check`
    prints them): a broken line is skipped at run time, so validation is where it shows."""
    from edgesim.redirects import RuleSet
    from origin._config import CONFIG_NAME, SiteConfigError, parse_config

    out: list[str] = []
    sources: list[Path] = []
    for site in topo.sites:
        sources += list(site.rules_files) or ([site.directory] if site.directory is not None else [])
        if site.directory is not None:
            # the origin reads the site's own settings when the run starts
            config = site.directory / CONFIG_NAME
            try:
                if config.is_file():
                    # as the origin reads it (undecodable bytes replaced)
                    parse_config(config.read_text(encoding="utf-8", errors="replace"), str(config))
            except SiteConfigError as exc:
                out.append(str(exc))
            except OSError as exc:
                out.append(f"{config}: cannot read: {exc.strerror or exc}")
    if topo.shadow is not None:  # a shadowing candidate's rules, compiled on every node
        sources += [f for _, files in topo.shadow.rules for f in files]
    for src in dict.fromkeys(sources):  # a file two sites (or a site and [shadow]) name: once
        try:
            rules = RuleSet.from_site(src) if src.is_dir() else RuleSet.from_file(src)
        except EdgesimError as exc:
            out.append(str(exc))
            continue
        with rules:
            out.extend(str(d) for d in rules.diagnostics if d.severity == "error")
    return out


@cli.command("run", short_help="Run a topology and report on its capacity.")
@click.argument("topology", required=False, default="demo")
@click.option("--seed", type=click.IntRange(0), help="Seed (default: the topology's).")
@click.option(
    "--mode",
    type=click.Choice(["virtual", "live"]),
    default="virtual",
    show_default=True,
    help="virtual: one process on virtual time; live: origin process, edges on loopback and a "
    "load generator process, wall time (docs/live.md).",
)
@click.option(
    "--engine",
    type=click.Choice(["fast", "trio"]),
    default="fast",
    show_default=True,
    help="Virtual mode's engine: fast (the event loop) or trio (the real shells on Trio's mock "
    "clock; slow, for small topologies).",
)
@click.option(
    "--window",
    type=_runmodes.WINDOW,
    help="Run only this part of the traffic curve, e.g. 10m,60s (live default: 60 s after the warm-up).",
)
@click.option(
    "--rate-scale",
    type=_runmodes.RATE_SCALE,
    help="Multiply every arrival rate by X (live default: auto, a peak of 40 requests/s).",
)
@click.option(
    "--json",
    "json_path",
    type=OutputFile(writable=True, stdout=True),
    help="Write the report as JSON ('-': to standard output, the summary to standard error).",
)
@click.option(
    "--csv",
    "csv_dir",
    type=click.Path(file_okay=False),
    callback=folder_name,
    help="Write summary.csv and timeseries.csv here.",
)
@click.option(
    "--html",
    "html_path",
    type=OutputFile(writable=True),
    help="Write a self-contained HTML report with charts.",
)
@click.option(
    "--sample-rate",
    type=FiniteFloatRange(0.0, 1.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Spatial sampling of cache keys (SHARDS-style; docs/sampling.md): simulate only keys "
    "hashing below R, with caches scaled by R. Counts are scaled back; latency is not available.",
)
@click.option(
    "--sample-keys",
    type=FiniteFloatRange(0.0, 1_000_000.0),
    default=0.5,
    show_default=True,
    help="With --sample-rate: keep about K keys of every popularity bucket of a site (ranks 1, "
    "2-3, 4-7, ...) and the most popular object of each cache policy, so the most popular "
    "objects are always simulated; 0: a plain key sample.",
)
@click.option(
    "--sample-seed",
    type=click.IntRange(0),
    help="With --sample-rate: which keys are sampled (default: the run's seed); another value "
    "samples other keys under the same traffic.",
)
@click.option(
    "--sample-thin",
    type=FiniteFloatRange(0.0, 1_000_000.0),
    default=20.0,
    show_default=True,
    help="With --sample-rate: simulate only a share q of a hot key's arrivals when even the edge "
    "node seeing the fewest of them gets about N / q per freshness lifetime; 0: never thin.",
)
@click.option(
    "--edge-processes",
    is_flag=True,
    help="Live mode: run each edge node as its own supervised OS process and the topology's "
    "[faults] for real (kill -9, origin stop/stall); prints the crash-drill report (docs/stress.md).",
)
@click.option("--quiet", is_flag=True, help="No progress bar and no tables.")
def run_command(
    topology: str,
    seed: int | None,
    mode: str,
    engine: str,
    window: tuple[float, float] | None,
    rate_scale: float | None,
    json_path: str | None,
    csv_dir: str | None,
    html_path: str | None,
    sample_rate: float,
    sample_keys: float,
    sample_seed: int | None,
    sample_thin: float,
    edge_processes: bool,
    quiet: bool,
) -> None:
    """Simulate TOPOLOGY (a file, or a bundled name; default: demo) and report.

    The topology is validated first; every problem is printed and the exit status is 1.
    Ctrl-C (or SIGTERM, SIGHUP) stops the run and still writes what it has, marked
    partial (exit 130); once the run has finished, its report is written whole first.
    """
    from edgesim import report as rep
    from edgesim._topoload import load_topology, resolve_topology_arg
    from edgesim.errors import TopologyError

    # the CSV folder and its files (report.write_csv) count as outputs too
    csv_files = [os.path.join(csv_dir, n) for n in rep.CSV_FILES] if csv_dir else []
    distinct_outputs(
        ("--json", json_path), ("--html", html_path), ("--csv", csv_dir), *(("--csv", f) for f in csv_files)
    )
    if csv_dir is not None and not edge_processes:  # (the drill refuses --csv)
        make_output_folder(csv_dir, "--csv")
    if sample_rate >= 1.0:  # the sampling options mean nothing without a sample: say so
        ctx = click.get_current_context()
        for name in ("sample_keys", "sample_seed", "sample_thin"):
            if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
                _fail(f"--{name.replace('_', '-')} needs --sample-rate below 1")
    try:
        with interrupted_by_stop_signals():
            topo = load_topology(resolve_topology_arg(topology))
    except TopologyError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    except EdgesimError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _not_started()
    if edge_processes:
        _run_edge_processes(
            topo, mode, engine, window, rate_scale, sample_rate, json_path, csv_dir, html_path
        )
        return
    topo, cut = _runmodes.prepare(
        topo, mode=mode, engine=engine, window=window, rate_scale=rate_scale, sample_rate=sample_rate
    )
    progress_cb: Any = None
    bar: Any = None
    if not quiet:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[n]:,} requests"),
            TimeRemainingColumn(),
            transient=True,
            console=_stderr_console(),
        )
        task = bar.add_task(f"simulating {topo.name}", total=topo.traffic.duration, n=0)

        def progress_cb(t: float, end: float, n: int) -> None:
            bar.update(task, completed=t, n=n)

        bar.start()
    try:
        with interrupted_by_stop_signals():  # kill, timeout, a closed terminal: as Ctrl-C
            result = _runmodes.run(
                topo,
                mode=mode,
                engine=engine,
                seed=seed,
                sample_rate=sample_rate,
                sample_keys=sample_keys,
                sample_seed=sample_seed,
                sample_thin=sample_thin,
                progress=progress_cb,
            )
    except TraceError as exc:  # worded as validate words it
        _fail(f"{topo.path or topo.name}: traffic.trace: {exc}")
    except (ValueError, EdgesimError) as exc:
        _fail(f"{topo.path or topo.name}: {exc}")
    except KeyboardInterrupt:  # while the run was set up (drawing a live run's schedule)
        _not_started()
    finally:
        if bar is not None:
            bar.stop()
    # Files hold only deterministic fields: same topology and seed, same bytes.
    report = result.to_dict(deterministic=True)
    report["meta"].update(cut)
    report["meta"]["topology_text"] = topo.source_text
    # A stop now would lose the report: the files are written first.
    with held() as stopped:
        try:
            if json_path:  # a file, or standard output for "-"
                write_result(json_path, rep.report_json(report))
            if csv_dir:
                rep.write_csv(report, csv_dir)
            if html_path:
                rep.write_html(report, html_path, topo.source_text)
        except OSError as exc:
            _fail(f"cannot write the report: {exc.strerror or exc}: {exc.filename or ''}")
    if not report["meta"].get("partial") and (getattr(result, "stopped", False) or stopped()):
        click.echo("stopped after the run had finished: the report is whole", err=True)
        sys.exit(130)
    if not quiet:
        console = None
        if json_path == STDOUT:  # the tables go to standard error, out of the JSON's way
            from rich.console import Console

            # as print_summary's own console: 150 columns into a pipe or file (not 80)
            console = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
        rep.print_summary(report, timing=result.timing, console=console)
        if sample_rate < 1.0:
            click.echo(
                f"sampled run (rate {sample_rate:g}, --sample-keys {sample_keys:g}, "
                f"--sample-thin {sample_thin:g}): counts estimated "
                "per stratum; latency, queueing and utilisation not available",
                err=True,
            )
        line = _runmodes.comparison_line(report)
        if line:
            click.echo(line, err=True)
        timing = result.timing
        rate = timing.get("simulated_requests_per_second")
        if rate:
            click.echo(
                f"wall time {timing.get('wall_seconds', 0):.1f} s, {rate:,.0f} simulated requests/s", err=True
            )
    if report["meta"].get("partial"):
        click.echo("run interrupted: the report is partial", err=True)
        sys.exit(130)


def _not_started() -> NoReturn:
    """Ctrl-C, SIGTERM or SIGHUP before a run started: nothing to report."""
    click.echo("run interrupted before it started: no report", err=True)
    sys.exit(130)


def _run_edge_processes(
    topo: Any,
    mode: str,
    engine: str,
    window: tuple[float, float] | None,
    rate_scale: float | None,
    sample_rate: float,
    json_path: str | None,
    csv_dir: str | None,
    html_path: str | None,
) -> None:
    """``run --mode live --edge-processes``: the crash drill (edgesim.drill) over the
    window's wall time: edges as supervised processes, faults run for real."""
    if mode != "live":
        _fail("--edge-processes needs --mode live")
    for given, option in (
        (engine != "fast", "--engine"),
        (sample_rate < 1.0, "--sample-rate"),
        (csv_dir, "--csv"),
        (html_path, "--html"),
    ):
        if given:
            _fail(f"{option} does not apply with --edge-processes (its report is the drill's: --json)")
    from functools import partial

    import trio

    from edgesim._signals import stoppable
    from edgesim._supervisor import SupervisorError
    from edgesim.drill import DrillOptions, run_drill, summary_lines

    if window is not None and window[0] != 0.0:
        _fail(
            "--window with --edge-processes must start at 0: "
            "the drill runs the whole traffic curve in the window's duration"
        )
    duration = window[1] if window is not None else 60.0
    rate = topo.traffic.peak_rps * rate_scale if rate_scale is not None else None
    opts = DrillOptions(duration=duration, rate=rate)
    stopped: list[dict[str, Any]] = []
    try:
        drill = partial(
            run_drill, topo, opts, progress=lambda m: click.echo(m, err=True), on_interrupt=stopped.append
        )
        report = trio.run(stoppable, drill)  # SIGTERM, SIGHUP: as Ctrl-C, the processes stopped
    except (ValueError, EdgesimError, SupervisorError) as exc:
        _fail(f"{topo.path or topo.name}: {exc}")
    except KeyboardInterrupt:
        from edgesim._crashcli import _interrupted

        report = _interrupted(stopped)  # none: one line, exit 130
    if json_path:
        with held():  # a stop now would lose the report: it is written first
            try:
                write_result(json_path, json.dumps(report, indent=2) + "\n")
            except OSError as exc:
                _fail(f"cannot write the report: {exc.strerror or exc}: {json_path}")
    for line in summary_lines(report):
        click.echo(line, err=json_path == STDOUT)
    if report.get("partial"):
        from edgesim._crashcli import PARTIAL

        click.echo(PARTIAL, err=True)
        sys.exit(130)


from edgesim.shadowbench import shadow_bench_command  # noqa: E402 (registered with its group)

bench_group.add_command(shadow_bench_command)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


from edgesim._cli_capacity import calibrate_command, sweep_command  # noqa: E402
from edgesim._crashcli import drill_command, stress_command  # noqa: E402

cli.add_command(drill_command)
cli.add_command(stress_command)
cli.add_command(sweep_command)
cli.add_command(calibrate_command)

from edgesim._plancli import mrc_command, plan_command  # noqa: E402

cli.add_command(plan_command)
cli.add_command(mrc_command)


def main() -> None:
    """Entry point of the ``edgesim`` script."""
    cli(prog_name="edgesim", auto_envvar_prefix="EDGESIM")


if __name__ == "__main__":  # pragma: no cover
    main()

"""Bad input across the CLI: one clear error line and a non-zero exit, never a traceback
or a run that cannot end.

Each case was a traceback, a hang or a silent acceptance before it was fixed. The
commands run in-process (click's runner): any exception other than the exit itself is a
failure, and every case fails before anything is measured, served or simulated.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgesim.cli import cli

TINY = """
name = "tiny"
seed = 1
interval = "10s"

[[regions]]
name = "north"
[regions.edge]
nodes = 1
workers = 2
memory_cache = "4MB"

[[sites]]
name = "small.example"
[sites.catalog]
objects = 20

[traffic]
duration = "20s"
peak_rps = 10
warmup = "2s"
"""

COSTS = """
format = 1
[profiles.default]
rules_default = "1us"
[profiles.default.service_time]
hit_memory = "100us"
hit_disk = "150us"
miss = MISS
revalidate = "300us"
redirect = "100us"
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "trace.csv").write_text("time,key,size\n0,/a,100\n1,/b,200\n")
    (tmp_path / "traced.toml").write_text(TINY.replace('warmup = "2s"', 'warmup = "2s"\ntrace = "trace.csv"'))
    (tmp_path / "good.csv").write_text("time,key,size\n0,/a,100\n1,/b,200\n")
    (tmp_path / "huge.csv").write_text("time,key,size\n0,/a,100\n1,/b,99999999999999999999999\n")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(b"time,key,size\n" + b"0,/a,100\n" * 1000)[:-30])
    (tmp_path / "inf-costs.toml").write_text(COSTS.replace("MISS", "inf"))
    (tmp_path / "binary.toml").write_bytes(b"\x00\xc0\xff" * 10)
    (tmp_path / "big-costs.toml").write_text("#" * (2 << 20))
    # 200 catalogs of 10 million objects each: valid, but about 300 GiB to simulate
    many = "".join(
        f'[[sites]]\nname = "s{i}.test"\n[sites.catalog]\nobjects = 10000000\n' for i in range(200)
    )
    (tmp_path / "many-objects.toml").write_text(TINY.replace("[traffic]", many + "[traffic]"))
    # site folders the origin cannot load, or with nothing to request
    for name in ("empty", "loop", "fifo", "zero"):
        (tmp_path / "sites" / name).mkdir(parents=True)
    for name in ("loop", "fifo", "zero"):
        (tmp_path / "sites" / name / "index.html").write_text("hi")
    (tmp_path / "sites" / "loop" / "sub").mkdir()
    (tmp_path / "sites" / "loop" / "sub" / "up").symlink_to("../../loop")
    os.mkfifo(tmp_path / "sites" / "fifo" / "_redirects")
    (tmp_path / "sites" / "zero" / "_edgesim.toml").symlink_to("/dev/zero")
    (tmp_path / "sites" / "latin1").mkdir()
    (tmp_path / "sites" / "latin1" / "index.html").write_text("hi")
    open(os.fsencode(tmp_path / "sites" / "latin1") + b"/caf\xe9.html", "w").close()
    # valid, but a run that would never end, or never fit in memory
    (tmp_path / "endless.toml").write_text(
        TINY.replace("peak_rps = 10", "peak_rps = 1e9").replace('"20s"', '"1h"')
    )
    (tmp_path / "heavy.toml").write_text(
        TINY.replace("peak_rps = 10", "peak_rps = 1e6").replace('"20s"', '"1h"')
    )
    (tmp_path / "o").mkdir()
    (tmp_path / "traced.toml").write_text(TINY.replace('warmup = "2s"', 'warmup = "2s"\ntrace = "good.csv"'))
    (tmp_path / "sweep.toml").write_text('topology = "tiny.toml"\n[grid]\ntraffic.peak_rps = [5, 10]\n')
    (tmp_path / "sweep-fifo.toml").write_text('topology = "fifo"\n[grid]\ntraffic.peak_rps = [5]\n')
    (tmp_path / "sweep-nul.toml").write_text('topology = "a\\u0000b"\n[grid]\ntraffic.peak_rps = [5]\n')
    os.mkfifo(tmp_path / "fifo")  # a rename over it would have replaced it with a file
    (tmp_path / "rules").write_text("/a /b 301\n")
    (tmp_path / "requests.jsonl").write_bytes(b'{"url": "/a"}\n\xff\xfe\n')
    (tmp_path / "urls.txt").write_bytes(b"/a\n/\xff\n")
    (tmp_path / "deep.toml").write_text("a = " + "[" * 1000 + "]" * 1000 + "\n")
    # a bad byte on line 613, after a blank row that once hid its whole read block
    row = b"%05d,/k%05d,1\n"
    rows = [row % (i, i) for i in range(510)] + [b"," * 15 + b"\n"]
    rows += [row % (i, i) for i in range(510, 1022)]
    rows[611] = rows[611].replace(b"/k", b"/\xff")
    (tmp_path / "nonutf8.csv").write_bytes(b"time,key,size  \n" + b"".join(rows))
    return tmp_path


def _invoke(args: list[str], cwd: Path) -> tuple[int, str]:
    # "@NAME" in a case is the file NAME in `cwd`
    result = CliRunner().invoke(cli, [a.replace("@", str(cwd) + "/") for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: raised {result.exception!r}\n{result.output}")
    return result.exit_code, result.output


def _one_error(args: list[str], cwd: Path, expected: str) -> None:
    code, output = _invoke(args, cwd)
    assert code != 0, output
    assert "Traceback" not in output
    assert expected in output, output
    # click's usage errors add "Usage: ..." and "Try ... --help" around the one line
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith(("Usage:", "Try "))]
    assert len(lines) == 1, output


CLI_CASES = [
    # catalogs too large for memory: refused before any is built (a MemoryError, or mrc
    # drawing for ever)
    *[
        (args, "sites: 2,000,000,020 catalog objects in all need about 298.0 GiB")
        for args in (
            ["run", "@many-objects.toml", "--quiet"],
            ["mrc", "@many-objects.toml"],
            ["bench", "engine", "@many-objects.toml"],
        )
    ],
    # origin URLs: a bad port said only "Port out of range"; a path and credentials were
    # ignored (and the password echoed in the start-up line)
    (
        ["edge", "serve", "--origin", "http://127.0.0.1:99999"],
        "--origin: expected http://HOST[:PORT] with a port",
    ),
    (
        ["edge", "serve", "--origin", "http://127.0.0.1:1/base?x"],
        "(no path or query), got 'http://127.0.0.1:1/base?x'",
    ),
    # sizes: 1.5 bytes became 1, and 10^23 bytes a float's 99,999,999,999,999,991,611,392
    (
        ["replay", "@good.csv", "--cache-size", "1.5"],
        "expected a whole number of bytes (or a unit, as in 1.5KB)",
    ),
    (["replay", "@good.csv", "--cache-size", "99999999999999999999999"], "at most 9,223,372,036,854,775,807"),
    # a window inside the warm-up: no steady figure, and rates divided by 1e-9
    (
        ["run", "demo", "--quiet", "--window", "1m,10s"],
        "it ends inside the traffic's warm-up (its first 300 s)",
    ),
    # names longer than the system takes: tracebacks from Path.exists()
    *[
        ([command, "x" * 300, *more], "x" * 300 + ": cannot read: File name too long")
        for command, *more in (["validate"], ["run", "--quiet"], ["mrc"], ["plan", "--slo", "p99<=80ms"])
    ],
    # nan passed click's FloatRange (every comparison with it is false)
    (["run", "@tiny.toml", "--quiet", "--sample-rate", "nan"], "'--sample-rate': 'nan' is not a finite"),
    (["mrc", "@good.csv", "--sample-rate", "nan"], "'--sample-rate': 'nan' is not a finite"),
    (["drill", "@tiny.toml", "--rate", "nan"], "'--rate': 'nan' is not a finite"),
    # the drill's load is synthetic: a trace was silently not replayed (nor read)
    (["drill", "@traced.toml", "--duration", "2s"], "trace replay is not run by the drill"),
    # "" is the current folder: the run's files landed in it
    (["drill", "@tiny.toml", "--workdir", ""], "expected a folder name, got ''"),
    (["stress", "@tiny.toml", "--workdir", ""], "expected a folder name, got ''"),
    # opened by click at once: a FIFO waited for a writer, /dev/zero grew memory
    (["redirects", "match", "@rules", "--requests", "@fifo"], "fifo: not a regular file"),
    (["redirects", "match", "@rules", "--requests", "/dev/zero"], "/dev/zero: not a regular file"),
    (["redirects", "bench", "@rules", "--urls", "@fifo"], "fifo: not a regular file"),
    (["drill", "@tiny.toml", "--rate", "inf"], "'--rate': 'inf' is not a finite"),
    (["drill", "@tiny.toml", "--flush-interval", "nan"], "'--flush-interval': 'nan'"),
    (["bench", "engine", "@tiny.toml", "--seconds", "nan"], "'--seconds': 'nan'"),
    (["bench", "sampling", "@tiny.toml", "--rate", "nan"], "'--rate': 'nan'"),
    (["bench", "replay", "--alpha", "nan"], "'--alpha': 'nan'"),
    (["redirects", "match", "@rules", "/a", "--now", "nan"], "'--now': 'nan' is not a finite"),
    (["redirects", "match", "@rules", "/a", "--now", "1e20"], "'--now': 1e+20 is not in the range"),
    (["bench", "replay", "--cache-fraction", "nan"], "'--cache-fraction': 'nan'"),
    (["bench", "edge", "--seconds", "nan"], "'--seconds': 'nan'"),
    (["edge", "serve", "--origin", "http://127.0.0.1:1", "--rollout", "nan"], "'--rollout': 'nan'"),
    # rates no run could ever finish
    (["bench", "engine", "@tiny.toml", "--peak-rps", "1e300"], "'--peak-rps': 1e+300 is not in the range"),
    (["run", "@tiny.toml", "--quiet", "--rate-scale", "1e308"], "--rate-scale 1e+308: a peak of inf"),
    (
        ["run", "@tiny.toml", "--quiet", "--mode", "live", "--rate-scale", "1e12", "--window", "0s,1s"],
        "--rate-scale 1e+12: a peak of 1e+13 requests/s (at most 1e+09)",
    ),
    (
        ["plan", "@tiny.toml", "--slo", "p99<=80ms", "--seeds", "999999999999"],
        "--seeds must be from 1 to 1000",
    ),
    (["mrc", "@tiny.toml", "--requests", "99999999999999999999999"], "'--requests'"),
    # loads that would never end or never fit in memory: refused up front, not run
    # out of memory with a traceback
    (["run", "@endless.toml", "--quiet"], "endless.toml: traffic: about 3.6e+12 requests expected"),
    (["run", "@heavy.toml", "--quiet"], "GiB and this machine has"),
    (["run", "@heavy.toml", "--quiet", "--engine", "trio"], "GiB and this machine has"),
    (["bench", "engine", "@tiny.toml", "--peak-rps", "1e9"], "more than the 1e+10 a run can draw"),
    (["bench", "sampling", "@endless.toml", "--seeds", "1"], "more than the 1e+10 a run can draw"),
    (
        ["plan", "@heavy.toml", "--slo", "p99<=80ms", "--quiet", "--max-nodes", "10000"],
        "heavy.toml: the peak window: traffic: about",
    ),
    (["mrc", "@endless.toml"], "about 3.6e+12 requests, more than the 100,000,000 drawn at most"),
    (
        ["plan", "@tiny.toml", "--slo", "p99<=80ms", "--cache-sizes", ""],
        "--cache-sizes: '' has an empty size",
    ),
    (["mrc", "@good.csv", "--sizes", "1MB,,2MB"], "--sizes: '1MB,,2MB' has an empty size"),
    (["mrc", "@tiny.toml", "--requests", "100000001"], "'--requests': 100000001 is not in the range"),
    (["bench", "replay", "--objects", "10000000000000"], "'--objects': 10000000000000 is not in the range"),
    (["bench", "replay", "--requests", "1000000000"], "'--requests': 1000000000 is not in the range"),
    # negative seeds reached numpy
    (["run", "@tiny.toml", "--quiet", "--seed", "-1"], "'--seed': -1 is not in the range x>=0"),
    (["mrc", "@tiny.toml", "--seed", "-1"], "'--seed': -1 is not in the range x>=0"),
    (["bench", "engine", "@tiny.toml", "--seed", "-1"], "'--seed': -1 is not in the range x>=0"),
    (["plan", "@tiny.toml", "--slo", "p99<=80ms", "--seed", "-5"], "--seed must be 0 or more, not -5"),
    # files
    (["run", "nosuchtopo", "--quiet"], "nosuchtopo: cannot read: No such file or directory (nor a bundled"),
    (["plan", "nosuchtopo", "--slo", "p99<=80ms"], "(nor a bundled topology: capacity, crash-drill, demo,"),
    (
        ["replay", "@huge.csv", "--cache-size", "1MB"],
        "huge.csv:3: size '99999999999999999999999' is too large",
    ),
    (
        ["edge", "serve", "--origin", "http://127.0.0.1:1", "--disk-cache", "@good.csv"],
        "good.csv exists and is not a directory",
    ),
    (
        ["calibrate", "--out", "@binary.toml"],
        "binary.toml: not UTF-8 text (invalid start byte); not a cost file",
    ),
    # output files that cannot be written: refused before the run, not after it
    (["calibrate", "--out", "@missing/costs.toml"], "missing is not a directory"),
    (["run", "@tiny.toml", "--quiet", "--json", "@missing/r.json"], "'--json': "),
    (["run", "@tiny.toml", "--quiet", "--json", ""], "'--json': expected a file name, got ''"),
    (["run", "@tiny.toml", "--quiet", "--csv", ""], "'--csv': expected a folder name, got ''"),
    (["sweep", "@sweep.toml", "--out", ""], "'--out': expected a folder name, got ''"),
    (["run", "@tiny.toml", "--quiet", "--html", "@good.csv/r.html"], "good.csv is not a directory"),
    (["run", "@tiny.toml", "--mode", "live", "--json", "@missing/r.json"], "missing is not a directory"),
    (["plan", "@tiny.toml", "--slo", "p99<=80ms", "--json", "@missing/p.json"], "missing is not a directory"),
    (["mrc", "@good.csv", "--html", "@missing/m.html"], "missing is not a directory"),
    # a curve of no request at all was printed as a hit ratio of 0
    (["mrc", "@good.csv", "--sample-rate", "1e-300"], "sample rate 1e-300 kept none of the 2 requests"),
    # sampling options without a sample were silently ignored
    (["run", "@tiny.toml", "--quiet", "--sample-keys", "2"], "--sample-keys needs --sample-rate below 1"),
    (["run", "@tiny.toml", "--quiet", "--sample-thin", "0"], "--sample-thin needs --sample-rate below 1"),
    # a topology's synthetic stream is not the curve of its [traffic] trace
    (["mrc", "@traced.toml"], "its traffic is the trace"),
    (["drill", "@tiny.toml", "--json", "@missing/d.json"], "missing is not a directory"),
    (["stress", "@tiny.toml", "--json", "@missing/s.json"], "missing is not a directory"),
    (["sweep", "@sweep.toml", "--csv", "@missing/s.csv"], "missing is not a directory"),
    (["sweep", "@sweep.toml", "--json", "@missing/s.json"], "missing is not a directory"),
    (["run", "@tiny.toml", "--quiet", "--json", "@fifo"], "fifo is not a regular file"),
    # a folder where no file can be made (/proc): refused before the run, not after it
    # with the name of a temporary file
    (["run", "@tiny.toml", "--quiet", "--json", "/proc/r.json"], "cannot write /proc/r.json: No such file"),
    (["run", "@tiny.toml", "--quiet", "--csv", "/proc/r"], "--csv: cannot write in /proc/r: No such file"),
    # two outputs naming one file: the second overwrote the first
    (
        ["run", "@tiny.toml", "--quiet", "--json", "@r.x", "--html", "@r.x"],
        "--json and --html name the same file",
    ),
    (
        ["run", "@tiny.toml", "--quiet", "--json", "@o/summary.csv", "--csv", "@o"],
        "--json and --csv name the same",
    ),
    (["run", "@tiny.toml", "--quiet", "--html", "@p", "--csv", "@p"], "--html and --csv name the same file"),
    (["sweep", "@sweep.toml", "--csv", "@s.out", "--json", "@s.out"], "--csv and --json name the same file"),
    # reading a FIFO or a device never ended
    (["validate", "@fifo"], "fifo: not a regular file"),
    (["redirects", "check", "@fifo"], "fifo: not a regular file"),
    (["redirects", "check", "/dev/zero"], "/dev/zero: not a regular file"),
    (["replay", "@fifo", "--cache-size", "1MB"], "fifo: not a regular file"),
    (["replay", "@cut.csv.gz", "--cache-size", "1MB"], "cut.csv.gz: corrupt gzip data: "),
    (["replay", "@a-folder", "--cache-size", "1MB"], "a-folder: cannot open: Is a directory"),
    (["mrc", "@cut.csv.gz"], "cut.csv.gz: corrupt gzip data: "),
    (["sweep", "@fifo"], "not a regular file"),
    # the spec's topology a FIFO (reading it hung) or a name with a NUL (a traceback)
    (["sweep", "@sweep-fifo.toml"], "sweep-fifo.toml:1: topology: fifo: not a regular file"),
    (["sweep", "@sweep-nul.toml"], "expected a topology file or bundled name, got a string with a NUL"),
    (["plan", "@tiny.toml", "--slo", "p99<=80ms", "--json", "@fifo"], "fifo is not a regular file"),
    # bytes that are not UTF-8: the file and line, not a traceback or lost rows
    (["replay", "@nonutf8.csv", "--cache-size", "1KB"], "nonutf8.csv:613: not UTF-8 text"),
    (["redirects", "match", "@rules", "--requests", "@requests.jsonl"], "requests.jsonl:2: not UTF-8 text"),
    (
        ["redirects", "bench", "@rules", "--urls", "@urls.txt", "--seconds", "0.05", "--no-reference"],
        "urls.txt:2: not UTF-8 text",
    ),
    # tomllib's recursive parser
    (["validate", "@deep.toml"], "invalid TOML: arrays or tables nested too deeply"),
    (["sweep", "@deep.toml"], "invalid TOML: arrays or tables nested too deeply"),
    # past a topology's bound on nodes per region (a run that would exhaust memory)
    (["plan", "@tiny.toml", "--slo", "p99<=80ms", "--max-nodes", "99999999"], "'--max-nodes': 99999999"),
    # a node name goes into every Via header
    (["edge", "serve", "--origin", "http://127.0.0.1:1", "--name", ""], "'--name': '': expected letters"),
    (["edge", "serve", "--origin", "http://127.0.0.1:1", "--name", "a\r\nX-Evil: 1"], "'--name': "),
    (["drill", "@tiny.toml", "--workdir", "@good.csv/w"], "cannot create"),
    (["stress", "@tiny.toml", "--workdir", "@good.csv/w"], "cannot create"),
]


@pytest.mark.parametrize(("args", "expected"), CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_bad_option_gives_one_error_line(files: Path, args: list[str], expected: str) -> None:
    _one_error(args, files, expected)


TOPOLOGY_CASES = [
    # (replace in TINY, new text, the expected problem)
    # a trace's own problem, under the key that names it (validate and run word it alike)
    (
        'warmup = "2s"',
        'warmup = "2s"\ntrace = "@huge.csv"',
        "bad.toml: traffic.trace: @huge.csv:3: size '9999",
    ),
    (
        'warmup = "2s"',
        'warmup = "2s"\ntrace = "@cut.csv.gz"',
        "bad.toml: traffic.trace: @cut.csv.gz: corrupt gzip data: Compressed file ended",
    ),
    # a device or FIFO where a file is read, or a file too large for what it names:
    # validate ate all memory or hung
    (
        'memory_cache = "4MB"',
        'calibration = "/dev/zero"',
        "calibration: expected a file, but /dev/zero is not a",
    ),
    (
        'memory_cache = "4MB"',
        'calibration = "@fifo"',
        "calibration: expected a file, but @fifo is not a regular",
    ),
    ('memory_cache = "4MB"', 'calibration = "@big-costs.toml"', "2,097,152 bytes, more than a cost file's"),
    (
        "[[sites]]\n",
        '[[sites]]\nrules = "/dev/zero"\n',
        "rules: expected a file, but /dev/zero is not a regular",
    ),
    # site folders that passed validate, then failed the run with a traceback or hung
    *[
        (
            "[sites.catalog]\nobjects = 20\n",
            f'directory = "@sites/{name}"\n',
            f"sites[0].directory: {problem}",
        )
        for name, problem in (
            ("empty", "expected a folder with files to serve (the traffic requests them); @sites/empty has"),
            ("loop", "@sites/loop/sub/up: a link loop (it leads back to a folder above it)"),
            ("fifo", "@sites/fifo/_redirects: not a regular file (a FIFO or device)"),
            ("zero", "@sites/zero/_edgesim.toml: not a regular file (a FIFO or device)"),
            ("latin1", "@sites/latin1/caf\ufffd.html: a file name that is not UTF-8 (URLs are): rename it"),
        )
    ],
    # the origin refused it in the run, after validate had passed it
    (
        "objects = 20",
        "objects = 20\nseed = 99999999999999999999",
        "seed: expected a whole number from 0 to 9223",
    ),
    # a name longer than the system takes: a traceback from Path.exists()
    ("[[sites]]\n", f'[[sites]]\nrules = "{"x" * 300}"\n', "rules: expected the path of a file, got "),
    ("[[sites]]\n", '[[sites]]\nrules = "a\\u0000b"\n', "rules: expected the path of a file, got a str"),
    ('memory_cache = "4MB"', 'calibration = "@inf-costs.toml"', "service_time.miss: expected a duration > 0"),
    (
        "workers = 2",
        'service_time = { distribution = "lognormal", median = "1ms", sigma = 1e300 }',
        "regions[0].edge.service_time.sigma: expected a number > 0 and at most 20, got 1e+300",
    ),
    # an egress of a ten-thousandth of a bit per second passed, with absurd latencies
    (
        'memory_cache = "4MB"',
        'memory_cache = "4MB"\negress = "0.0001bps"',
        "regions[0].edge.egress: expected 0 (unlimited) or a rate of at least 1Mbps",
    ),
    ("peak_rps = 10", "peak_rps = 1e300", "traffic.peak_rps: expected a number > 0 and at most 1e+09"),
    (
        'interval = "10s"',
        'interval = "1us"',
        'interval: expected at least traffic.duration / 1,000,000 (2e-05s), got "1us"',
    ),
    # one problem, not a second "at most traffic.duration" about the same nan
    ('interval = "10s"', "interval = nan", "interval: expected a duration > 0"),
    # durations past ~32 years overflowed the simulated clock's dates
    (
        'name = "north"',
        'name = "north"\nclient_latency = 1e300',
        "regions[0].client_latency: expected a duration >= 0 such as 200ms, 1.5s, 30m or 2h "
        "(a number is seconds), at most 1e+09s, got 1e+300",
    ),
    (
        'warmup = "2s"',
        'warmup = "2s"\n[[traffic.flash_crowds]]\nsite = "small.example"\n'
        'start = "1s"\nduration = "5s"\nmultiplier = 1e300',
        "traffic.flash_crowds[0].multiplier: expected a number > 0 and at most 1e+06, got 1e+300",
    ),
    # an origin outage past the end of traffic was accepted (a drill waited it out)
    (
        'warmup = "2s"',
        'warmup = "2s"\n[[faults.origin_outages]]\nat = "15s"\nduration = "1m"',
        "faults.origin_outages[0].duration: expected at most 5s (the outage starts at 15s",
    ),
    ('warmup = "2s"', 'warmup = "2s"\ntrace = "@huge.csv"', "huge.csv:3: size '99999999999999999999999'"),
    # digits of other scripts (float() reads them) and minutes past 59
    ('memory_cache = "4MB"', 'memory_cache = "\uff14MB"', "regions[0].edge.memory_cache: expected a size"),
    ('name = "north"', 'name = "north"\nutc_offset = "+05:99"', "regions[0].utc_offset: expected hours"),
    # numpy overflowed computing the popularity weights
    ("objects = 20", "objects = 20\nzipf = 500", "sites[0].catalog.zipf: expected a number from 0 to 20"),
    # a draw min * u ** (-1 / alpha) overflowed a float
    (
        "objects = 20",
        'objects = 20\nsize = { distribution = "pareto", alpha = 0.01, min = "1B" }',
        "sites[0].catalog.size.alpha: expected a number >= 0.1, got 0.01",
    ),
]


# "-" where standard output cannot stand in: a folder of files, an HTML page, files a
# command reads back (sweep resumes from its outputs, calibrate keeps other profiles).
# Each was a file or folder literally named "-" in the current folder.
DASH_CASES = [
    ["run", "@tiny.toml", "--quiet", "--html", "-"],
    ["run", "@tiny.toml", "--quiet", "--csv", "-"],
    ["mrc", "@good.csv", "--html", "-"],
    ["calibrate", "--out", "-"],
    ["sweep", "@sweep.toml", "--csv", "-"],
    ["sweep", "@sweep.toml", "--json", "-"],
    ["sweep", "@sweep.toml", "--out", "-"],
]


@pytest.mark.parametrize("args", DASH_CASES, ids=[" ".join(a) for a in DASH_CASES])
def test_dash_is_refused_where_stdout_makes_no_sense(
    files: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(files)
    option = args[-2]
    _one_error(args, files, f"Invalid value for '{option}': '-': expected a f")
    assert not (files / "-").exists()


@pytest.mark.parametrize(("old", "new", "expected"), TOPOLOGY_CASES, ids=[c[1] for c in TOPOLOGY_CASES])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_topology_value_gives_one_problem_line(
    files: Path, command: str, old: str, new: str, expected: str
) -> None:
    assert old in TINY
    (files / "bad.toml").write_text(TINY.replace(old, new.replace("@", str(files) + "/")))
    args = [command, "@bad.toml"] + (["--quiet"] if command == "run" else [])
    code, output = _invoke(args, files)
    assert code == 1, output
    assert expected.replace("@", str(files) + "/") in output, output
    assert len(output.strip().splitlines()) == 1, output


@pytest.mark.parametrize(
    "service_time",
    [
        '{ distribution = "pareto", min = "1ms", alpha = 0.1 }',
        '{ distribution = "exponential", mean = 1e9 }',
        '{ distribution = "lognormal", median = 1e9, sigma = 20 }',
    ],
)
def test_extreme_service_times_still_run(files: Path, service_time: str) -> None:
    """Valid, if absurd: draws past any run's length are held there, not overflowed."""
    (files / "slow.toml").write_text(
        TINY.replace("workers = 2", f"workers = 2\nservice_time = {service_time}")
    )
    code, output = _invoke(["run", "@slow.toml", "--quiet"], files)
    assert code == 0, output


def test_mrc_refuses_more_requests_than_the_machine_can_hold(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the drawn requests take about 70 bytes each: on a machine of 1 GiB, 100 million
    # would not fit: mrc refuses them before drawing, rather than run out of memory
    import edgesim.engine

    monkeypatch.setattr(edgesim.engine, "physical_memory", lambda: float(2**30))
    _one_error(
        ["mrc", "@tiny.toml", "--requests", "100000000"],
        files,
        "100,000,000 requests need about 7.5 GiB to draw and measure, and this machine has 1.0 GiB",
    )
    code, output = _invoke(["mrc", "@tiny.toml", "--requests", "10000", "--json"], files)
    assert code == 0 and '"requests": 10000' in output, output


def test_an_origin_url_with_a_password_is_refused_without_echoing_it() -> None:
    result = CliRunner().invoke(cli, ["edge", "serve", "--origin", "http://u:secret@127.0.0.1:99999"])
    code, output = result.exit_code, result.output
    assert code != 0 and "Traceback" not in output
    assert "--origin: expected http://HOST[:PORT], got a URL with a user name or password" in output
    assert "secret" not in output

"""`edgesim edge serve --shadow/--rollout`: bad options get one error line and a
non-zero exit; a real `edgesim edge serve` process shadows and labels its answers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgesim.cli import cli

SITE = "site.test"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shadow", "bogus"], "--shadow: expected reference, rules:HOST=FILE or origin:URL"),
        (["--shadow", "rules:site.test"], "--shadow rules:HOST=FILE: expected HOST=FILE, got 'site.test'"),
        (["--shadow", "rules:site.test=/nonexistent/_redirects"], "/nonexistent/_redirects"),
        (["--shadow", "reference", "--shadow", "origin:http://x"], "one kind of candidate per node"),
        (["--shadow", "origin:ftp://x"], "expected origin:http://HOST:PORT"),
        (["--rollout", "0.5"], "--rollout needs --shadow"),
        (["--shadow", "reference", "--shadow-timeout", "soon"], "--shadow-timeout: expected a duration"),
        (["--shadow", "reference", "--rollout", "1.5"], "1.5 is not in the range"),
    ],
)
def test_bad_shadow_options_are_one_line_errors(args: list[str], message: str) -> None:
    r = CliRunner().invoke(cli, ["edge", "serve", "--origin", "http://127.0.0.1:9", "--port", "0", *args])
    assert r.exit_code != 0
    assert message in r.output, r.output
    assert "Traceback" not in r.output


def test_edge_serve_process_with_v2_rules(tmp_path: Path) -> None:
    site = tmp_path / "sites" / SITE
    site.mkdir(parents=True)
    (site / "about.html").write_text("about")
    (site / "_redirects").write_text("/old /about 301\n")
    v2 = tmp_path / "v2"
    v2.write_text("/old /about-us 301\n")
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "edgesim", "edge", "serve", "--origin", f"embedded:{site.parent}",
         "--port", "0", "--shadow", f"rules:{SITE}={v2}", "--rollout", "1", "--shadow-timeout", "5s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://" in line, line + (proc.stderr.read() if proc.stderr else "")
        base = line.split()[4]

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a: object, **k: object) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect)
        req = urllib.request.Request(base + "/old", headers={"Host": SITE})
        with pytest.raises(urllib.error.HTTPError) as info:
            opener.open(req, timeout=20)
        assert info.value.code == 301 and info.value.headers["location"] == "/about"
        assert info.value.headers["x-edgesim-answered-by"] == "primary"
        stats_req = urllib.request.Request(base + "/.edgesim/edge/shadow", headers={"Host": SITE})
        with opener.open(stats_req, timeout=20) as resp:
            doc = json.loads(resp.read())
        assert (doc["mode"], doc["mismatches"], doc["fallbacks"]) == ("rollout", 1, 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_bench_shadow_rejects_unknown_parts_and_runs_the_core_part() -> None:
    r = CliRunner().invoke(cli, ["bench", "shadow", "--parts", "core,bogus"])
    assert r.exit_code == 2 and "expected a comma-separated list of core, engine, live" in r.output
    from edgesim.shadowbench import core_costs

    doc = core_costs(rules_count=50, requests=40, rounds=1)
    assert doc["baseline"]["ratio"] == 1.0
    for name in ("rules_inline", "rules_guarded", "reference_guarded"):
        # an identical candidate: every request compared, none differs
        assert doc[name]["compared"] == 2 * 40 and doc[name]["mismatches"] == 0, name
    assert 0 < doc["rollout_0.6_rules_guarded"]["compared"] < 2 * 40

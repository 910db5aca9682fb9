"""`edgesim redirects ...` driven through click's runner and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "topologies" / "sites" / "example"


def test_check_reports_in_spec_format(tmp_path: Path) -> None:
    f = tmp_path / "_redirects"
    f.write_text("/a /b\n/x /y 302 Foo=bar\n/c /d 307\n/* /all 200\n/late /never\n/a /b\n")
    code, out, err = run_cli("redirects", "check", str(f))
    assert code == 1
    lines = out.splitlines()
    assert f'{f}:2:11: error: unknown condition "Foo" [UNKNOWN_CONDITION]' in lines
    assert any(line.startswith(f"{f}:3:7: warning:") and "[STATUS_NOT_ON_NETLIFY]" in line for line in lines)
    assert any(line.startswith(f"{f}:5:1: warning:") and "[UNREACHABLE]" in line for line in lines)
    assert any(line.startswith(f"{f}:6:1: warning:") and "[DUPLICATE_RULE]" in line for line in lines)
    assert "1 error, 3 warnings in 1 file" in err


def test_check_clean_file_exits_zero_and_strict_warnings(tmp_path: Path) -> None:
    f = tmp_path / "_redirects"
    f.write_text("/a /b 301\n")
    assert run_cli("redirects", "check", str(f))[0] == 0
    f.write_text("/a /b 308\n")
    assert run_cli("redirects", "check", str(f))[0] == 0
    assert run_cli("redirects", "check", "--strict", str(f))[0] == 1


def test_check_lint_warnings(tmp_path: Path) -> None:
    f = tmp_path / "_redirects"
    f.write_text(
        "/go/* /:splat 302\n"
        "/out //evil.example 302\n"
        "/articles/:slug /articles/:slug/ 301\n"
        "/same /same 301\n"
        "/a/:x /b/:y 301\n"
        "/new/* /new/:splat 302\n"
        "  /blog/:year/:slug /posts/:slug 301\n"
    )
    code, out, _ = run_cli("redirects", "check", "--json", str(f))
    assert code == 0
    found = {(d["code"], d["line"]) for d in map(json.loads, out.splitlines())}
    assert {
        ("OPEN_REDIRECT", 1),
        ("OPEN_REDIRECT", 2),
        ("TRAILING_SLASH_ONLY", 3),
        ("SELF_REDIRECT", 4),
        ("UNBOUND_REFERENCE", 5),
        ("SELF_REDIRECT", 6),
    } <= found
    unused = [d for d in map(json.loads, out.splitlines()) if d["code"] == "UNUSED_PLACEHOLDER"]
    assert [(d["line"], d["column"]) for d in unused] == [(5, 1), (7, 3)]
    assert ":year" in unused[1]["message"]


def test_check_site_directory_and_missing_file(tmp_path: Path) -> None:
    code, out, err = run_cli("redirects", "check", str(EXAMPLE))
    assert code == 0, out
    code, out, err = run_cli("redirects", "check", str(tmp_path / "nope"))
    assert code == 1
    assert "Error:" in err and "cannot read" in err and "Traceback" not in err


def test_match_human_output() -> None:
    code, out, _ = run_cli("redirects", "match", str(EXAMPLE), "https://example.com/store?id=42")
    assert code == 0
    assert "_redirects:8: /store id=:id      /products/:id             301" in out
    assert "status:   301 (redirect)" in out
    assert "location: /products/42?id=42" in out
    code, out, _ = run_cli("redirects", "match", str(EXAMPLE), "/nothing/here")
    assert code == 0 and out.strip() == "no rule matches /nothing/here"


def test_match_context_options() -> None:
    code, out, _ = run_cli("redirects", "match", str(EXAMPLE), "/", "--country", "nz", "--json")
    assert json.loads(out)["match"]["to"] == "/en-au/"
    code, out, _ = run_cli(
        "redirects", "match", str(EXAMPLE), "/", "--header", "Accept-Language: fr-FR", "--json"
    )
    assert code == 0
    assert json.loads(out)["match"]["to"] == "/fr/"
    code, out, _ = run_cli("redirects", "match", str(EXAMPLE), "/members/x", "--json")
    assert json.loads(out)["match"]["to"] == "/login"
    code, out, _ = run_cli(
        "redirects", "match", str(EXAMPLE), "/members/x", "--jwt-secret", "k", "--role", "member", "--json"
    )
    got = json.loads(out)["match"]
    assert (got["to"], got["status"]) == ("/members/x", 200)


def test_match_requests_jsonl(tmp_path: Path) -> None:
    reqs = tmp_path / "reqs.jsonl"
    reqs.write_text(
        '{"url": "/news/a"}\n'
        '{"url": "/", "country": "AU"}\n'
        "not json\n"
        '{"url": "/", "cookies": {"nf_lang": "fr"}}\n'
        '{"nourl": 1}\n'
        '{"url": "ftp://x"}\n'
        '{"url": "/", "country": 5}\n'
        '{"url": "/", "headers": {"Accept-Language": ["fr"]}}\n'
    )
    code, out, err = run_cli("redirects", "match", str(EXAMPLE), "--requests", str(reqs))
    # every line has its result, and the exit status says that some were errors
    assert code == 1
    assert err.strip() == f'Error: {reqs}: 5 of 8 request lines could not be matched (see their "error")'
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 8
    assert rows[0]["match"]["to"] == "/blog/a"
    assert rows[1]["match"]["to"] == "/en-au/"
    assert "invalid JSON" in rows[2]["error"] and rows[2]["line"] == 3
    assert rows[3]["match"]["to"] == "/fr/"
    assert '"url"' in rows[4]["error"]
    assert "not an http" in rows[5]["error"]
    assert rows[6]["error"].endswith('"country" must be a string, not a number')
    assert rows[7]["error"].endswith(
        '"headers" must be an object of strings, not an object with an array among its values'
    )
    # JSON nested past the parser's recursion, and objects or null where a string goes
    reqs.write_text(
        "[" * 100_000 + "]" * 100_000 + '\n{"url": "/", "country": {}}\n{"url": "/", "country": null}\n'
    )
    code, out, err = run_cli("redirects", "match", str(EXAMPLE), "--requests", str(reqs))
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and "nested too deeply" in rows[0]["error"]
    assert rows[1]["error"].endswith('"country" must be a string, not an object')
    assert "match" in rows[2]  # null: as if not given
    # a file of good lines only exits 0
    reqs.write_text('{"url": "/news/a"}\n\n{"url": "/"}\n')
    code, out, err = run_cli("redirects", "match", str(EXAMPLE), "--requests", str(reqs))
    assert (code, err, len(out.splitlines())) == (0, "", 2)


def test_match_usage_errors() -> None:
    code, _, err = run_cli("redirects", "match", str(EXAMPLE))
    assert code == 2 and "give either URL or --requests" in err
    code, _, err = run_cli("redirects", "match", str(EXAMPLE), "/x", "--cookie", "novalue")
    assert code == 2 and "NAME=VALUE" in err
    code, _, err = run_cli("redirects", "match", str(EXAMPLE), "not a url")
    assert code == 1 and "not an http" in err


def test_bench_json(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("/news/a\n/store?id=1\n/nothing\n")
    code, out, _ = run_cli(
        "redirects", "bench", str(EXAMPLE / "_redirects"), "--urls", str(urls), "--seconds", "0.05", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["rules"] == 9 and data["urls"] == 3
    assert data["matched_share"] == pytest.approx(2 / 3, abs=0.01)
    assert data["native"]["match_many_per_s"] > 0 and data["reference"]["match_per_s"] > 0
    assert data["ratios"]["match_vs_reference"] > 0


def test_entry_point_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "edgesim", "redirects", "check", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "rules" in proc.stderr

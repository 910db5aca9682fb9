"""Shadowing in the capacity engine: a topology's [shadow] table, run in virtual time,
and its validation errors (file, line, key path)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from shadow_topo import write_topology

from edgesim._topoload import parse_topology
from edgesim.engine import simulate
from edgesim.errors import TopologyError


def _topology(tmp_path: Path, shadow: str) -> str:
    return str(write_topology(tmp_path, textwrap.dedent(shadow)))


def _run(tmp_path: Path, shadow: str) -> dict:  # type: ignore[type-arg]
    path = _topology(tmp_path, shadow)
    topo = parse_topology(Path(path).read_text(), path=path)
    return simulate(topo).to_dict(deterministic=True)


def test_rules_candidate_mismatches_are_reported_per_node(tmp_path: Path) -> None:
    shadow = """\
    candidate = "rules"
    regions = ["eu-west"]
    samples = 4
    timeout = "5s"
    [shadow.rules]
    "shop.test" = "v2/_redirects"
    """
    r = _run(tmp_path, shadow)
    sh = r["shadow"]
    assert sh["candidate"] == "rules" and sh["mode"] == "shadow"
    assert sorted(sh["nodes"]) == ["eu-west-0", "eu-west-1"]  # us-east does not shadow
    tot = sh["totals"]
    assert tot["mismatches"] > 0 and tot["agreed"] > 0 and tot["errors"] == tot["timeouts"] == 0
    assert tot["compared"] == tot["seen"] == tot["agreed"] + tot["mismatches"]
    for node in sh["nodes"].values():
        assert len(node["samples"]) <= 4
        for s in node["samples"]:
            assert s["request"]["url"].startswith("https://shop.test/old-shop")
            assert (s["primary"]["target"], s["candidate"]["target"]) == ("/page-1.html", "/page-3.html")
    # the primary is served: redirects counted as without shadowing
    plain = _run(tmp_path, 'candidate = "reference"\nregions = ["us-east"]')
    assert r["totals"]["redirects"] == plain["totals"]["redirects"]
    assert "candidate_seconds" not in sh["totals"]  # wall-clock figures stay in timing
    again = _run(tmp_path, shadow)
    assert again == r  # deterministic


def test_rollout_in_the_engine(tmp_path: Path) -> None:
    path = _topology(tmp_path, 'candidate = "reference"\nrollout = 0.6\ntimeout = "5s"')
    topo = parse_topology(Path(path).read_text(), path=path)
    result = simulate(topo)
    tot = result.report["shadow"]["totals"]
    assert tot["seen"] > 500
    # The hash is per URL (sticky), so the share of *traffic* follows the URLs' popularity:
    # here one redirect source carries 30% of it. The fraction itself is tested on
    # distinct URLs in test_shadow.py.
    assert 0.3 < tot["selected"] / tot["seen"] < 0.9
    assert tot["answered_candidate"] == tot["agreed"] == tot["selected"]  # reference == native
    assert result.timing["shadow_candidate_seconds"] > 0


ORIGIN = 'candidate = "origin"\n[shadow.origin]\n'
ORIGIN_ROLLOUT = 'candidate = "origin"\nrollout = 1.0\ntimeout = "5s"\n[shadow.origin]\n'


def test_origin_candidate_in_the_engine(tmp_path: Path) -> None:
    plain = _run(tmp_path, 'candidate = "reference"\nsamples = 0')  # the rule candidate serves no answer
    same = _run(tmp_path, 'candidate = "origin"\nrollout = 1.0\ntimeout = "5s"')
    tot = same["shadow"]["totals"]
    assert tot["compared"] > 100 and tot["agreed"] == tot["answered_candidate"] == tot["compared"]
    # the candidate's answers, served under the primary's deploy id, change nothing
    for key in ("requests", "hits", "misses", "origin_requests", "redirects", "errors"):
        assert same["totals"][key] == plain["totals"][key], key
    differs = _run(
        tmp_path,
        ORIGIN_ROLLOUT + '"shop.test" = { html = "no-store" }',
    )
    d = differs["shadow"]["totals"]
    assert d["mismatches"] > 0 and d["agreed"] > 0 and d["fallbacks"] == d["mismatches"]
    sample = next(iter(differs["shadow"]["nodes"].values()))["samples"][0]
    assert sample["candidate"]["cache"] == "no-store" != sample["primary"]["cache"]
    assert sample["request"]["url"].endswith(".html")
    for key in ("requests", "hits", "misses", "origin_requests"):
        assert differs["totals"][key] == plain["totals"][key], key  # the primary's answers


RULES = 'candidate = "rules"\n[shadow.rules]\n'
REF_RULES = 'candidate = "reference"\n[shadow.rules]\n'


@pytest.mark.parametrize(
    ("shadow", "key_path", "message"),
    [
        ('candidate = "nope"', "shadow.candidate", 'expected one of "reference", "rules", "origin"'),
        (ORIGIN + '"shop.tst" = {}', 'shadow.origin."shop.tst"', "expected a site"),
        (ORIGIN + '"shop.test" = { htm = "x" }', 'shadow.origin."shop.test".htm', "unknown key"),
        ('candidate = "reference"\n[shadow.origin]\n"shop.test" = {}', "shadow.origin", "expected no origin"),
        ('candidate = "rules"', "shadow.rules", "missing"),
        ('candidate = "reference"\nrollout = 1.5', "shadow.rollout", "expected"),
        ('candidate = "reference"\ntimeout = "soon"', "shadow.timeout", "expected"),
        ('candidate = "reference"\nregions = ["eu-wst"]', "shadow.regions[0]", 'did you mean "eu-west"'),
        ('candidate = "reference"\nrolout = 0.5', "shadow.rolout", 'did you mean "rollout"'),
        (RULES + '"shop.tst" = "v2/_redirects"', 'shadow.rules."shop.tst"', "expected a site"),
        (RULES + '"shop.test" = "v3/_redirects"', 'shadow.rules."shop.test"', "does not exist"),
        (REF_RULES + '"shop.test" = "v2/_redirects"', "shadow.rules", "expected no rules"),
        # two _redirects for one site were both compiled (a site has one of each)
        (
            RULES + '"shop.test" = ["v2/_redirects", "v2/_redirects"]',
            'shadow.rules."shop.test"[1]',
            "expected at most one _redirects file per site, got a second one",
        ),
        (RULES + '"shop.test" = []', 'shadow.rules."shop.test"', "expected a rule file or an array of them"),
    ],
)  # fmt: skip
def test_bad_shadow_tables_name_file_line_and_key_path(
    tmp_path: Path, shadow: str, key_path: str, message: str
) -> None:
    path = _topology(tmp_path, shadow)
    text = Path(path).read_text()
    with pytest.raises(TopologyError) as info:
        parse_topology(text, path=path)
    probs = [p for p in info.value.problems if p.key_path == key_path]
    assert probs, [str(p) for p in info.value.problems]
    assert message in probs[0].message
    assert probs[0].line >= text.splitlines().index("[shadow]") + 1
    assert str(probs[0]).startswith(f"{path}:{probs[0].line}: {key_path}: ")


def test_run_command_prints_and_writes_the_shadow_section(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgesim.cli import cli

    path = _topology(
        tmp_path, 'candidate = "rules"\ntimeout = "5s"\n[shadow.rules]\n"shop.test" = "v2/_redirects"'
    )
    html = tmp_path / "r.html"
    out = tmp_path / "r.json"
    r = CliRunner().invoke(
        cli, ["run", path, "--html", str(html), "--json", str(out)], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    assert "Shadow: candidate rules, shadow" in r.output
    assert "candidate cost" in r.output and "x the primary's rule evaluation" in r.output
    assert "/page-1.html (redirect)" in r.output and "/page-3.html (redirect)" in r.output
    page = html.read_text()
    assert "<h2>Shadow: candidate rules, shadow" in page and "https://shop.test/old-shop" in page
    import json

    doc = json.loads(out.read_text())
    assert doc["shadow"]["totals"]["mismatches"] > 0


CRASH = '[faults]\n[[faults.crashes]]\nregion = "eu-west"\nnode = 0\nat = "1s"\ndown_for = "1s"\n\n'


def test_a_node_keeps_its_shadow_across_a_crash(tmp_path: Path) -> None:
    shadow = 'candidate = "reference"\ntimeout = "5s"\nregions = ["eu-west"]'
    path = _topology(tmp_path, shadow)
    text = (
        Path(path)
        .read_text()
        .replace(
            "[shadow]",
            CRASH + "[shadow]",
        )
    )
    topo = parse_topology(text, path=path)
    r = simulate(topo).to_dict(deterministic=True)
    assert any(e["kind"] == "node_restart" for e in r["events"])
    nodes = r["shadow"]["nodes"]
    # down for a quarter of the run: without its shadow after the restart, it would
    # have seen about a third of its twin's requests
    assert nodes["eu-west-0"]["seen"] > 0.5 * nodes["eu-west-1"]["seen"] > 0


def test_a_sampled_run_says_its_shadow_counts_are_of_the_sample(tmp_path: Path) -> None:
    shadow = 'candidate = "reference"\nregions = ["eu-west"]'
    path = _topology(tmp_path, shadow)
    topo = parse_topology(Path(path).read_text(), path=path)
    full = simulate(topo).to_dict(deterministic=True)["shadow"]
    samp = simulate(topo, sample_rate=0.1).to_dict(deterministic=True)["shadow"]
    assert "counts" not in full
    assert samp["counts"].startswith("simulated requests only")
    assert 0 < samp["totals"]["seen"] < full["totals"]["seen"]  # the sample's, unscaled

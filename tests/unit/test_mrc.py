"""Miss-ratio curves: one pass over a trace agrees with replaying each cache size."""

from __future__ import annotations

import json
import random
from array import array
from pathlib import Path

import pytest
from helpers import run_cli

from edgesim._topoload import parse_topology
from edgesim.mrc import SAMPLE_ABOVE, _sample_hash, auto_rate, default_sizes, lru_curve, topology_trace
from edgesim.replay import replay, zipf_trace
from edgesim.traces import Trace, write_trace

TOL = 0.01  # the bound; fixed-size keys in fact agree exactly


def _mixed_trace(n: int = 30_000, seed: int = 5) -> Trace:
    """Heavy-tailed popularity, sizes from 0 bytes to several MB (some objects larger
    than the smaller caches), each key with a fixed size."""
    rng = random.Random(seed)
    obj = [rng.choice([0, 100, 5_000, 50_000, 400_000, 3_000_000]) for _ in range(2_000)]
    keys = array("Q", [min(int(rng.paretovariate(0.9)) - 1, 1_999) for _ in range(n)])
    sizes = array("q", [obj[k] for k in keys])
    return Trace(array("d", range(n)), keys, sizes)


@pytest.mark.parametrize(
    ("trace", "caps"),
    [
        (zipf_trace(60_000, 8_000, 0.9, seed=3), [0, 1, 50_000, 400_000, 3_000_000, 30_000_000, 10**9]),
        (_mixed_trace(), [1_000, 60_000, 500_000, 2_000_000, 3_000_000, 8_000_000, 40_000_000]),
    ],
    ids=["zipf", "mixed-sizes"],
)
def test_curve_agrees_with_replay_lru_at_every_size(trace: Trace, caps: list[int]) -> None:
    curve = lru_curve(trace.keys, trace.sizes, caps)
    assert curve.sizes == tuple(sorted(caps))
    for size, h, bh in zip(curve.sizes, curve.hit_ratio, curve.byte_hit_ratio, strict=True):
        r = replay(trace, size, "lru")
        assert abs(h - r.hit_ratio) <= TOL, size
        assert abs(bh - r.byte_hit_ratio) <= TOL, size
        assert h == pytest.approx(r.hit_ratio, abs=1e-12)
    # the curve is not flat: it does measure something
    assert curve.hit_ratio[0] < curve.hit_ratio[-1]


def test_objects_larger_than_the_cache_do_not_push_others_out() -> None:
    # A(10) B(1000) A(10): B never fits 100 bytes, so A stays and its second request hits
    t = Trace(array("d", [0, 1, 2]), array("Q", [1, 2, 1]), array("q", [10, 1000, 10]))
    c = lru_curve(t.keys, t.sizes, [100, 1010])
    assert c.hit_ratio == pytest.approx((1 / 3, 1 / 3))
    assert c.hit_ratio[0] == replay(t, 100).hit_ratio
    # 1009 bytes: B is stored, A (10 + 1000 > 1009) is evicted
    c2 = lru_curve(t.keys, t.sizes, [1009])
    assert c2.hit_ratio[0] == replay(t, 1009).hit_ratio == 0.0


def test_shards_sample_is_close_to_the_exact_curve() -> None:
    trace = zipf_trace(300_000, 30_000, 0.8, seed=7)
    caps = [50_000_000, 100_000_000, 200_000_000, 400_000_000]
    exact = lru_curve(trace.keys, trace.sizes, caps)
    sampled = lru_curve(trace.keys, trace.sizes, caps, sample_rate=0.2)
    assert sampled.sampled_requests < 0.5 * exact.sampled_requests
    for a, b in zip(exact.hit_ratio, sampled.hit_ratio, strict=True):
        assert abs(a - b) < 0.03


def _first_appearance(trace: Trace) -> array[int]:
    """The keys renumbered 0, 1, 2... in order of first appearance (as CSV keys are)."""
    ids: dict[int, int] = {}
    return array("Q", [ids.setdefault(k, len(ids)) for k in trace.keys])


def test_sampled_byte_hit_ratio_is_corrected_as_the_hit_ratio() -> None:
    # Every object the same size: the byte hit ratio is the hit ratio, exactly, and a
    # sample's must be too. Before, only the request count had the SHARDS-adj correction
    # and the byte hit ratio was the raw sample's (0.5 points off here at rate 0.01).
    trace = zipf_trace(100_000, 10_000, 0.9, seed=2)
    keys = _first_appearance(trace)
    sizes = [1000] * len(keys)
    caps = [10_000, 100_000, 1_000_000, 10_000_000]
    for rate in (0.01, 0.1, 0.5):
        c = lru_curve(keys, sizes, caps, sample_rate=rate)
        assert c.sampled_requests != round(rate * len(keys))  # the correction does something
        assert c.byte_hit_ratio == pytest.approx(c.hit_ratio, abs=1e-9), rate


def test_which_keys_are_sampled_does_not_follow_their_numbering() -> None:
    # CSV keys are numbered in order of first appearance, and the first keys are often
    # the hottest. The hash used to be of the number alone: ids 1 and 3 hash below 0.01
    # and were in every sample at rates from 0.0093 up. Now the seed salts the hash.
    rate = 0.05
    threshold = int(rate * 2**24)
    seeds = range(1, 41)
    for key in range(20):
        share = sum(_sample_hash(key, s) < threshold for s in seeds) / len(seeds)
        assert share <= 0.25, key  # binomial(40, 0.05): 10 or more has p ~ 1e-5
    # lru_curve samples what _sample_hash says (its numpy hash is the same function)
    keys = [k * 0x9E3779B97F4A7C15 % 2**64 for k in range(5_000)]
    for s in (1, 7):
        c = lru_curve(keys, [1] * len(keys), [10], sample_rate=0.3, seed=s)
        assert c.objects == sum(_sample_hash(k, s) < int(0.3 * 2**24) for k in keys)
    # the same seed, the same sample; another seed, another
    trace = zipf_trace(50_000, 5_000, 0.9, seed=4)
    a, b, c2 = (lru_curve(trace.keys, trace.sizes, [2**20], sample_rate=0.1, seed=s) for s in (3, 3, 4))
    assert a == b and a.sampled_requests != c2.sampled_requests


def test_auto_rate_is_higher_for_a_heavy_head() -> None:
    import numpy as np

    n = SAMPLE_ABOVE * 2
    assert auto_rate([1] * 10) == 1.0
    spread = np.random.default_rng(1).integers(0, 10**7, n, dtype=np.uint64)
    assert auto_rate(spread) == pytest.approx(SAMPLE_ABOVE / n)
    ranks = np.arange(1, 200_001, dtype=np.float64) ** -0.9
    zipf = np.random.default_rng(2).choice(200_000, n, p=ranks / ranks.sum()).astype(np.uint64)
    assert 0.5 <= auto_rate(zipf) <= 0.6  # sum p**2 ~ 0.003: noise 0.05 needs ~0.55


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="sample rate"):
        lru_curve([1], [1], [10], sample_rate=0.0)
    with pytest.raises(ValueError, match="no cache sizes"):
        lru_curve([1], [1], [])
    with pytest.raises(ValueError, match=">= 0"):
        lru_curve([1], [1], [-5])


def test_default_sizes_reach_the_footprint() -> None:
    s = default_sizes(10 * 2**20)
    assert s[0] == 2**20 and s[-1] >= 10 * 2**20 and s[-2] < 10 * 2**20


TOPO = """
name = "mrc-small"
seed = 1
[[regions]]
name = "a"
client_share = 0.7
[[regions]]
name = "b"
client_share = 0.3
[origin]
region = "a"
[[sites]]
name = "one.example"
share = 0.6
[sites.catalog]
objects = 300
zipf = 1.0
seed = 4
[[sites]]
name = "two.example"
share = 0.4
[sites.catalog]
objects = 200
zipf = 0.7
seed = 5
[traffic]
duration = "10m"
peak_rps = 20
"""


def test_topology_stream_uses_catalog_sizes_and_site_mix() -> None:
    topo = parse_topology(TOPO)
    t = topology_trace(topo, region="a", requests=20_000, seed=2)
    assert len(t) == 20_000
    seen: dict[int, int] = {}
    for k, s in zip(t.keys, t.sizes, strict=True):
        assert seen.setdefault(k, s) == s  # a key keeps its size
    sites = [k >> 40 for k in t.keys]
    share0 = sites.count(0) / len(sites)
    assert 0.57 < share0 < 0.63
    assert {k & ((1 << 40) - 1) for k in t.keys if k >> 40 == 1} <= set(range(200))
    only = topology_trace(topo, site="two.example", requests=5_000)
    assert {k >> 40 for k in only.keys} == {1}
    # default length: the region's requests over the traffic's duration at peak
    assert len(topology_trace(topo, region="b")) == int(20 * 0.3 * 600)
    with pytest.raises(ValueError, match="no region 'c'"):
        topology_trace(topo, region="c")
    with pytest.raises(ValueError, match="no site"):
        topology_trace(topo, site="x.example")


def test_cli_trace_agrees_with_edgesim_replay(tmp_path: Path) -> None:
    trace = _mixed_trace(8_000, seed=9)
    path = tmp_path / "t.csv"
    write_trace(path, trace, "csv")
    html = tmp_path / "curve.html"
    code, out, _ = run_cli("mrc", str(path), "--sizes", "60KB,2MB,40MB", "--json", "--html", str(html))
    assert code == 0
    points = json.loads(out)["points"]
    assert [p["cache_size"] for p in points] == [60_000, 2_000_000, 40_000_000]
    for p in points:
        code, rout, _ = run_cli("replay", str(path), "--cache-size", str(p["cache_size"]), "--json")
        assert code == 0
        assert abs(json.loads(rout)["hit_ratio"] - p["hit_ratio"]) <= TOL
    # the same requests as libCacheSim oracleGeneral give the same curve
    binary = tmp_path / "t.oracleGeneral"
    write_trace(binary, trace, "oracle-general")
    code, bout, _ = run_cli("mrc", str(binary), "--sizes", "60KB,2MB,40MB", "--json")
    assert code == 0 and json.loads(bout)["points"] == points
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "http" not in page.split("<svg", 1)[0]


def test_cli_table_for_a_topology(tmp_path: Path) -> None:
    topo = tmp_path / "t.toml"
    topo.write_text(TOPO)
    code, out, _ = run_cli("mrc", str(topo), "--region", "a", "--sizes", "1MB,8MB", "--requests", "3000")
    assert code == 0
    assert "LRU hit ratio by cache size" in out and "3,000 requests" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mrc", "missing.csv"], "Error: missing.csv: cannot open: No such file or directory"),
        (["mrc", "gone.oracleGeneral.zst"], "Error: gone.oracleGeneral.zst: cannot open: No such file"),
        (["mrc", "demo", "--sizes", "12 parsecs"], "--sizes: expected a size"),
        (["mrc", "demo", "--region", "mars"], "no region 'mars'"),
    ],
)
def test_cli_bad_input_is_one_line(args: list[str], message: str) -> None:
    code, out, err = run_cli(*args)
    assert code != 0
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err + out

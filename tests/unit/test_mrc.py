"""Miss-ratio curves: one pass over a trace agrees with replaying each cache size."""

from __future__ import annotations

import json
import random
from array import array
from pathlib import Path

import pytest
from helpers import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim._topoload import parse_topology
from edgesim.mrc import (
    HEAD_NOISE,
    SAMPLE_ABOVE,
    _sample_hash,
    auto_rate,
    auto_sample,
    default_sizes,
    lru_curve,
    topology_trace,
)
from edgesim.replay import replay, zipf_trace
from edgesim.traces import Trace, write_trace


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
        # fixed-size keys: exactly, both ratios
        assert (h, bh) == (r.hit_ratio, r.byte_hit_ratio), size
    # the curve is not flat: it does measure something
    assert curve.hit_ratio[0] < curve.hit_ratio[-1]


def test_curve_is_exact_for_byte_counts_beyond_float_precision() -> None:
    # Stack distances were summed as floats: 2**53 + 1 bytes rounded to 2**53, so the
    # curve said an object fitted a 2**53-byte cache beside a 1-byte one (replay: it
    # does not). Byte totals past 2**63 must not wrap either.
    big = 2**53
    rows = [(0, "a", big), (1, "b", 1), (2, "a", big), (3, "b", 1), (4, "b", 1)]
    huge = [(i, k, 2**62 + ord(k)) for i, k in enumerate("abcabca")] + [(9, "z", 0), (10, "z", 0)]
    for trace, caps in (
        (Trace.from_rows(rows), [big - 1, big, big + 1, 2**60]),
        (Trace.from_rows(huge), [0, 2**62 + 98, 2**63 + 195, 3 * 2**62 + 294, 2**70]),
    ):
        curve = lru_curve(trace.keys, trace.sizes, caps)
        got = list(zip(curve.hit_ratio, curve.byte_hit_ratio, strict=True))
        want = [(r.hit_ratio, r.byte_hit_ratio) for r in (replay(trace, c) for c in curve.sizes)]
        assert got == want
    assert lru_curve(Trace.from_rows(rows).keys, Trace.from_rows(rows).sizes, [big]).hit_ratio == (0.2,)


def test_objects_larger_than_the_cache_do_not_push_others_out() -> None:
    # A(10) B(1000) A(10): B never fits 100 bytes, so A stays and its second request hits
    t = Trace(array("d", [0, 1, 2]), array("Q", [1, 2, 1]), array("q", [10, 1000, 10]))
    c = lru_curve(t.keys, t.sizes, [100, 1010])
    assert c.hit_ratio == pytest.approx((1 / 3, 1 / 3))
    assert c.hit_ratio[0] == replay(t, 100).hit_ratio
    # 1009 bytes: B is stored, A (10 + 1000 > 1009) is evicted
    c2 = lru_curve(t.keys, t.sizes, [1009])
    assert c2.hit_ratio[0] == replay(t, 1009).hit_ratio == 0.0


def test_curve_at_interpolates_from_a_zero_byte_cache() -> None:
    # A(10) A(10) B(10) A(10): a 0-byte cache stores nothing; 10 bytes hold A until B
    t = Trace(array("d", [0, 1, 2, 3]), array("Q", [1, 1, 2, 1]), array("q", [10, 10, 10, 10]))
    c = lru_curve(t.keys, t.sizes, [0, 10, 20])
    assert c.hit_ratio == (0.0, 0.25, 0.5)
    assert c.at(0) == c.at(-5) == 0.0
    assert c.at(5) == pytest.approx(0.125)  # linear from 0 bytes, where log(0) is not
    assert c.at(10) == 0.25
    assert 0.25 < c.at(15) < 0.5
    assert c.at(10**9) == 0.5
    above = lru_curve(t.keys, t.sizes, [10, 20])
    assert above.at(5) == pytest.approx(0.125) and above.at(-1) == 0.0


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


def test_exact_keys_holding_every_key_give_the_exact_curve() -> None:
    # a stratified sample whose head is every key is the exact pass, bit for bit, at any
    # rate (several size classes here: objects larger than some of the caches)
    trace = _mixed_trace(6_000, seed=11)
    caps = [1_000, 60_000, 500_000, 3_000_000, 40_000_000]
    exact = lru_curve(trace.keys, trace.sizes, caps)
    every = set(trace.keys)
    for rate in (0.5, 0.01, 1e-9):  # 1e-9: below the hash's resolution, no tail to miss
        c = lru_curve(trace.keys, trace.sizes, caps, sample_rate=rate, exact_keys=every)
        assert (c.hit_ratio, c.byte_hit_ratio) == (exact.hit_ratio, exact.byte_hit_ratio), rate
        assert (c.footprint, c.objects, c.sampled_requests) == (exact.footprint, exact.objects, len(trace))
        assert c.exact_keys == len(every)
    # a tail too thin for the hash to sample is refused, not estimated from nothing
    with pytest.raises(ValueError, match="outside the exact keys"):
        lru_curve(trace.keys, trace.sizes, caps, sample_rate=1e-9, exact_keys=list(every)[:-1])


@settings(max_examples=80, deadline=None)
@given(
    reqs=st.lists(st.integers(0, 12), min_size=1, max_size=80),
    caps=st.lists(st.integers(0, 1_000), min_size=1, max_size=5),
    rate=st.floats(1e-9, 1.0, exclude_min=False),
    seed=st.integers(0, 2**32),
)
def test_weights_are_consistent_every_key_in_the_head_is_exact(
    reqs: list[int], caps: list[int], rate: float, seed: int
) -> None:
    # keys keep their size (sizes: a function of the key), several size classes
    keys = reqs
    sizes = [[0, 1, 7, 50, 300][k % 5] for k in keys]
    exact = lru_curve(keys, sizes, caps)
    c = lru_curve(keys, sizes, caps, sample_rate=rate, seed=seed, exact_keys=set(keys))
    assert (c.hit_ratio, c.byte_hit_ratio, c.footprint) == (
        exact.hit_ratio,
        exact.byte_hit_ratio,
        exact.footprint,
    )


def test_a_head_makes_a_low_rate_sample_far_less_noisy() -> None:
    # Zipf(0.9) keys are numbered by rank (0 the hottest). At rate 0.05 a plain sample's
    # error is mostly the hottest keys being in it or not: with seed 7 they are mostly
    # out (7,404 requests sampled of 10,000 expected) and the curve is off by up to 0.155.
    # Processing the head in full leaves the tail's noise: over seeds 1..10 the head's
    # largest error was 0.016 to 0.088 (mean 0.010 to 0.042), 0.022 with seed 7.
    trace = zipf_trace(200_000, 20_000, 0.9, seed=3)
    caps = [2**20 * 4**i for i in range(6)]
    rate, head = auto_sample(trace.keys, 0.05)
    assert rate == 0.05 and 20 < len(head) < 200
    assert max(head) < len(head) + 10  # the most requested keys (by this trace's counts)
    exact = lru_curve(trace.keys, trace.sizes, caps)
    plain = lru_curve(trace.keys, trace.sizes, caps, sample_rate=rate, seed=7)
    strat = lru_curve(trace.keys, trace.sizes, caps, sample_rate=rate, seed=7, exact_keys=head)
    err_plain = max(abs(a - b) for a, b in zip(plain.hit_ratio, exact.hit_ratio, strict=True))
    err_strat = max(abs(a - b) for a, b in zip(strat.hit_ratio, exact.hit_ratio, strict=True))
    assert err_plain > 0.12
    assert err_strat < 0.04
    assert strat.exact_keys == len(head) and strat.sampled_requests > 3 * plain.sampled_requests


def test_auto_sample_takes_the_smallest_head_meeting_the_noise_bound() -> None:
    import numpy as np

    n = SAMPLE_ABOVE * 2
    ranks = np.arange(1, 200_001, dtype=np.float64) ** -0.9
    zipf = np.random.default_rng(2).choice(200_000, n, p=ranks / ranks.sum()).astype(np.uint64)
    # the default rate already meets the bound: no head
    assert auto_sample(zipf) == (auto_rate(zipf), ())
    assert auto_sample([1] * 10) == (1.0, ())
    counts = np.bincount(zipf.astype(np.int64), minlength=200_000).astype(np.float64)
    p2 = np.sort(counts * (counts - 1.0))[::-1] / (n * (n - 1.0))

    def noise(rate: float, h: int) -> float:
        return float(np.sqrt((1 - rate) / rate * p2[h:].sum()))

    for rate in (0.01, 0.1):
        got, head = auto_sample(zipf, rate)
        assert got == rate and head == auto_sample(zipf, rate)[1]  # deterministic
        h = len(head)
        assert 0 < h < 1_000
        assert set(head) == set(np.argsort(-counts, kind="stable")[:h].tolist())  # the hottest
        assert noise(rate, h) <= HEAD_NOISE < noise(rate, h - 1)  # the smallest such head
    # a capped head misses the bound rather than grow
    assert len(auto_sample(zipf, 0.01, max_head=3)[1]) == 3
    assert auto_sample(zipf, 0.01, max_head=0) == (0.01, ())


def test_cli_states_the_head_of_a_sample(tmp_path: Path) -> None:
    path = tmp_path / "z.csv"
    write_trace(path, zipf_trace(20_000, 2_000, 0.9, seed=1), "csv")
    code, out, _ = run_cli("mrc", str(path), "--sizes", "1MB,64MB", "--sample-rate", "0.05", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["sample_rate"] == 0.05 and data["exact_keys"] > 0
    code, out, _ = run_cli(
        "mrc", str(path), "--sizes", "1MB,64MB", "--sample-rate", "0.05", "--no-head", "--json"
    )
    assert code == 0 and json.loads(out)["exact_keys"] == 0
    code, out, _ = run_cli("mrc", str(path), "--sizes", "1MB,64MB", "--sample-rate", "0.05")
    text = " ".join(out.split())  # the table's line may wrap
    assert code == 0 and f"with the {data['exact_keys']:,} most requested keys in full" in text
    code, out, _ = run_cli("mrc", str(path), "--sizes", "1MB,64MB", "--json")  # exact: no head
    assert code == 0 and json.loads(out)["exact_keys"] == 0


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
        r = json.loads(rout)
        # exactly the same numbers (the curve's JSON used to round them to 6 places)
        assert (r["hit_ratio"], r["byte_hit_ratio"]) == (p["hit_ratio"], p["byte_hit_ratio"])
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

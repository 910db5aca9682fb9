"""Spatial sampling of cache keys (SHARDS-style): ``simulate(..., sample_rate=R)``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import topo
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim._cachestore import CacheEntry
from edgesim.cli import cli
from edgesim.engine import _Engine, _key_samples, simulate
from edgesim.topology import Catalog, Deploy, Distribution, Faults, OriginOutage, Site, Topology


def test_key_hash_is_stable_and_uniform() -> None:
    assert _key_samples("a.test", ["/x", "/y"])[0] == _key_samples("a.test", ["/x"])[0]
    # a key's hash is its own, whatever the URLs hashed beside it
    longer = ["/x", "/assets/a-much-longer-name.0123456789.woff2"]
    assert _key_samples("a.test", longer)[0] == _key_samples("a.test", ["/x"])[0]
    assert _key_samples("a.test", ["/x"])[0] != _key_samples("b.test", ["/x"])[0]
    xs = _key_samples("s.test", [f"/o/{i}" for i in range(20000)]).tolist()
    assert all(0.0 <= x < 1.0 for x in xs)
    assert abs(sum(x < 0.1 for x in xs) / len(xs) - 0.1) < 0.01


def _key_hash(host: str, url: str, salt: bytes) -> float:
    """The key hash as docs/sampling.md defines it, one byte at a time."""
    mask = 2**64 - 1
    start = hashlib.blake2b(host.encode(), digest_size=8, person=b"edgesim-shards", salt=salt).digest()
    h = int.from_bytes(start, "big")
    data = url.encode()
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & mask
    h ^= len(data)
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & mask
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & mask
    h ^= h >> 31
    return (h >> 11) / 2.0**53


@settings(max_examples=80, deadline=None)
@given(
    urls=st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=60), min_size=1, max_size=30),
    salt=st.binary(max_size=16),
)
def test_key_hashes_follow_their_definition(urls: list[str], salt: bytes) -> None:
    # all URLs in one native call, ASCII or not: each as the byte-by-byte definition
    got = _key_samples("h.test", urls, salt).tolist()
    assert got == [_key_hash("h.test", u, salt) for u in urls]


def test_sampled_hit_ratio_close_to_full_and_counts_scaled() -> None:
    t = topo(rps=2000.0, duration=20.0, objects=20000, memory=8 * 2**20)
    full = simulate(t).to_dict(deterministic=True)
    samp = simulate(t, sample_rate=0.25).to_dict(deterministic=True)
    ft, st = full["totals"], samp["totals"]
    assert abs(ft["object_hit_ratio"] - st["object_hit_ratio"]) < 0.05
    # counts are scaled back by 1/R: close to the full run's
    assert abs(st["requests"] - ft["requests"]) / ft["requests"] < 0.15
    assert abs(st["origin_requests"] - ft["origin_requests"]) / ft["origin_requests"] < 0.2
    assert samp["meta"]["simulated_requests"] < 0.4 * full["meta"]["simulated_requests"]
    # no warm-up: every simulated request is a steady one; the run's own count, not scaled
    assert samp["meta"]["steady_requests"] == samp["meta"]["simulated_requests"] < st["requests"]
    assert full["meta"]["steady_requests"] == full["meta"]["simulated_requests"] == ft["requests"]
    assert samp["meta"]["sampled"]["rate"] == 0.25
    assert samp["meta"]["sampled"]["latency"] == "not available"
    assert samp["meta"]["sampled"]["skipped_requests"] > 0


def test_sampled_report_has_no_latency_and_is_deterministic() -> None:
    t = topo(duration=5.0, objects=2000)
    a = simulate(t, sample_rate=0.5).to_dict(deterministic=True)
    b = simulate(t, sample_rate=0.5).to_dict(deterministic=True)
    assert json.dumps(a) == json.dumps(b)
    assert set(a["totals"]["latency"].values()) == {None}
    assert set(a["totals"]["queueing"].values()) == {None}
    assert a["origin"]["utilisation"] is None and set(a["origin"]["queueing"].values()) == {None}
    for n in a["nodes"].values():
        assert n["utilisation"] is None and n["max_queue"] is None
    assert set(a["timeseries"]["latency_p99"]) == {None}
    assert "sampled" not in simulate(t).to_dict(deterministic=True)["meta"]


_OUTCOMES = ("hits", "collapsed", "stale", "misses", "revalidated", "redirects", "passes", "errors", "failed")


def test_a_sampled_groups_outcome_counts_add_up_to_its_requests() -> None:
    # scaled estimates rounded one by one would not (a node's 12.4 + 7.4 requests)
    t = topo(rps=500.0, duration=10.0, objects=3000, regions=2, nodes=3)
    rep = simulate(t, sample_rate=0.3).to_dict(deterministic=True)
    groups = [rep["totals"], *rep["regions"].values(), *rep["nodes"].values(), *rep["sites"].values()]
    assert len(groups) > 8
    for g in groups:
        assert sum(g[k] for k in _OUTCOMES) == g["requests"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(0.0, 1e7, allow_nan=False), min_size=1, max_size=9),
        min_size=1,
        max_size=6,
    ).filter(lambda rows: len({len(r) for r in rows}) == 1)
)
def test_apportion_keeps_each_row_total_and_each_part_within_one(rows: list[list[float]]) -> None:
    from edgesim.metrics import apportion

    values = np.array(rows)
    totals = np.rint(values.sum(axis=1)).astype(np.int64)
    out = apportion(values, totals)
    assert out.dtype == np.int64
    assert out.sum(axis=1).tolist() == totals.tolist()
    assert (np.abs(out - values) < 1.0 + 1e-6).all()
    assert (out >= 0).all()
    whole = np.floor(values) == values  # whole estimates stay as they are
    assert (out[whole] == values[whole]).all()


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_bad_sample_rates_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        simulate(topo(duration=1.0), sample_rate=bad)


@pytest.mark.parametrize("bad", ["0", "1.01", "-1", "x"])
def test_cli_refuses_bad_sample_rate(bad: str) -> None:
    result = CliRunner().invoke(cli, ["run", "demo", "--quiet", "--sample-rate", bad])
    assert result.exit_code == 2
    assert "--sample-rate" in result.output


def test_stratified_estimate_counts_every_arrival() -> None:
    # every arrival is drawn, kept or not, so the estimate of the steady-state requests
    # is exact: each recorded row stands for its stratum's share of them
    t = topo(rps=2000.0, duration=10.0, objects=5000, warmup=2.0)
    full = simulate(t).to_dict(deterministic=True)
    for keys, whole in ((0.0, 0), (2.0, 3), (4.0, 7)):
        samp = simulate(t, sample_rate=0.1, sample_keys=keys).to_dict(deterministic=True)
        est = samp["meta"]["sampled"]["estimator"]
        assert est["kind"] == "stratified"
        assert est["keys_per_bucket"] == keys
        assert est["whole_objects_per_site"] == whole
        assert est["policy_heads"] == (2 if keys else 0)  # hashed assets, HTML
        assert samp["totals"]["requests"] + est["unrepresented_requests"] == full["totals"]["requests"]
        assert abs(samp["totals"]["object_hit_ratio"] - full["totals"]["object_hit_ratio"]) < 0.02
        assert samp["meta"]["simulated_requests"] < 0.5 * full["meta"]["simulated_requests"]


def test_every_popularity_bucket_gets_about_k_keys() -> None:
    # a bucket of n objects is sampled at max(R, K / n): the top buckets whole, the
    # middle ones at K keys each (in expectation), the long tail at R
    eng = _Engine(topo(duration=1.0, objects=20000), 1, None, 0.01, 4.0)
    kept = eng.sites[0].kept_of[:20000]
    assert kept[:7].all()  # buckets of 1, 2 and 4 objects
    mid = [int(kept[(1 << b) - 1 : (1 << (b + 1)) - 1].sum()) for b in range(3, 9)]  # 8 ... 256 objects
    assert 12 <= sum(mid) <= 36, mid  # 6 buckets x 4 keys
    tail = kept[4095:]  # buckets of 4096 objects and more: rate 0.01 (K / n < R)
    assert 0.005 < tail.mean() < 0.02


def test_each_seed_samples_other_keys() -> None:
    # the key hash is salted with the run's seed: a seed's sample is stable, and runs
    # over several seeds average over independent samples of the tail
    t = topo(duration=1.0, objects=20000)
    a = _Engine(t, 1, None, 0.01, 2.0).sites[0].kept_of
    b = _Engine(t, 1, None, 0.01, 2.0).sites[0].kept_of
    c = _Engine(t, 2, None, 0.01, 2.0).sites[0].kept_of
    assert (a == b).all()
    assert a[:3].all() and c[:3].all()  # the buckets sampled whole
    tail_a, tail_c = a[4095:20000], c[4095:20000]  # sampled at R = 0.01
    assert 80 < tail_a.sum() < 240 and 80 < tail_c.sum() < 240
    assert (tail_a & tail_c).sum() < 0.25 * tail_a.sum()  # independent: about 1% in common


def test_strata_are_the_origins_cache_policies() -> None:
    # a key's class is the Cache-Control value the origin serves it with: hashed
    # scripts, styles and images share their strata, HTML pages have their own
    eng = _Engine(topo(duration=1.0, objects=2000), 1, None, 0.1, 2.0)
    m = eng.sites[0]
    dep = eng.origin.sites[m.host].deploy
    policies = {}
    for u in m.urls:
        info = dep.file(u)
        assert info is not None
        policies[u] = info.cache_control
    assert {cls for (_, cls, _) in eng.strata_ids} == set(policies.values())
    assert len(set(policies.values())) == 2  # hashed assets, HTML
    assert dep.catalog is not None
    kinds = dep.catalog.kinds()
    assert set(kinds) == {"html", "js", "css", "img"}
    for lo in range(511, 1023, 64):  # one popularity bucket (ranks 512 - 1023)
        group = {k: m.stratum(u) for u, k in zip(m.urls[lo : lo + 64], kinds[lo : lo + 64], strict=True)}
        assert group["js"] == group["css"] == group["img"] != group["html"]


def test_the_most_popular_key_of_each_policy_is_kept() -> None:
    # HTML is 0.5% of this catalog, so its most popular page ranks far below the buckets
    # sampled whole; it is kept anyway (else the HTML strata near the top would be
    # empty and take the hit ratio of less popular pages), and only it and the top
    # bucket are certain to be in the sample
    site = Site(
        "shop.test", catalog=Catalog(objects=20000, zipf=0.9, seed=2, types=(("html", 0.005), ("img", 0.995)))
    )
    for seed in (1, 2, 3):
        eng = _Engine(topo(duration=1.0, sites=(site,), seed=seed), seed, None, 0.01, 1.0)
        m = eng.sites[0]
        cat = eng.origin.sites[m.host].deploy.catalog
        assert cat is not None
        kinds = cat.kinds()
        top_html = kinds.index("html")
        assert top_html > 200  # bucket of 256 objects, sampled at 1 / 256 without the rule
        assert m.kept_of[0] and m.kept_of[top_html]
        assert eng.policy_heads == {0: 2}


def test_keys_for_the_whole_catalog_reproduce_the_full_run() -> None:
    # with K >= the largest bucket (256 of 500 objects) and no thinned key, every
    # arrival is simulated, each stratum's weight is 1, and the caches (scaled by R)
    # still hold everything, so the counts are the full run's
    t = topo(rps=400.0, duration=10.0, objects=500)
    full = simulate(t).to_dict(deterministic=True)
    samp = simulate(t, sample_rate=0.5, sample_keys=256, sample_thin=0).to_dict(deterministic=True)
    assert samp["meta"]["simulated_requests"] == full["meta"]["simulated_requests"]
    for k in ("requests", "hits", "misses", "object_hit_ratio", "origin_requests", "bytes_served"):
        assert samp["totals"][k] == full["totals"][k], k
    assert samp["meta"]["sampled"]["estimator"]["pooled_strata"] == 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), 2e6])
def test_bad_sample_keys_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="sample_keys"):
        simulate(topo(duration=1.0), sample_rate=0.5, sample_keys=bad)


@pytest.mark.parametrize("bad", ["-2", "nan", "x"])
def test_cli_refuses_bad_sample_keys(bad: str) -> None:
    result = CliRunner().invoke(cli, ["run", "demo", "--quiet", "--sample-rate", "0.1", "--sample-keys", bad])
    assert result.exit_code == 2
    assert "--sample-keys" in result.output


def test_sampled_run_follows_deploys() -> None:
    # A deploy changes half the URLs: arrivals after it are filtered by the new
    # catalog's sample (blocks never reach across a deploy), and the estimate of the
    # requests stays exact.
    t = topo(
        rps=2000.0, duration=12.0, objects=3000, deploys=(Deploy("shop.test", at=6.0, new_fraction=0.5),)
    )
    full = simulate(t).to_dict(deterministic=True)
    samp = simulate(t, sample_rate=0.1).to_dict(deterministic=True)
    est = samp["meta"]["sampled"]["estimator"]
    assert samp["totals"]["requests"] + est["unrepresented_requests"] == full["totals"]["requests"]
    assert abs(samp["totals"]["object_hit_ratio"] - full["totals"]["object_hit_ratio"]) < 0.03
    assert [e["kind"] for e in samp["events"]] == [e["kind"] for e in full["events"]]
    # the deploy's new URLs were sampled and simulated: origin requests jump after it
    series = samp["timeseries"]
    per_second = dict(zip(series["start"], series["origin_requests"], strict=True))
    before = sum(v for at, v in per_second.items() if 4.0 <= at < 6.0)
    after = sum(v for at, v in per_second.items() if 6.0 <= at < 8.0)
    assert after > 1.5 * before


def test_keys_sampled_above_the_rate_weigh_less_in_small_caches() -> None:
    # 20,000 objects, edges of 2 MB scaled to 100 KB: the popular keys sampled whole
    # would crowd such a cache. Charged R / p of their bytes, the cache's occupancy by
    # the sample is R times the full run's, and the estimate stays close (charged in
    # full, it was 0.057 low).
    t = topo(rps=2000.0, duration=20.0, objects=20000, memory=2 * 2**20)
    full = simulate(t).to_dict(deterministic=True)["totals"]["object_hit_ratio"]
    samp = simulate(t, sample_rate=0.05, sample_keys=2.0).to_dict(deterministic=True)
    assert abs(samp["totals"]["object_hit_ratio"] - full) < 0.03
    eng = _Engine(t, 1, None, 0.05, 2.0)
    m = eng.sites[0]
    assert eng.charge[(m.host, m.urls[0])] == 0.05  # rank 1: sampled at 1, charged R
    store = eng.nodes[0].core.cache._memory
    entry = CacheEntry(
        200, (), None, 10_000, 0.0, 0.0, 0.0, 60.0, False, False, 0.0, 0.0, None, None, (), (), ""
    )
    store.put(f"{m.host}\x00d\x00{m.urls[0]}", [entry], m.host)
    assert store.used_bytes == max(1, int(entry.nbytes * 0.05))


def test_cli_defaults_are_the_engines() -> None:
    from edgesim.engine import DEFAULT_SAMPLE_KEYS, MAX_SAMPLE_KEYS, MAX_SAMPLE_THIN, THIN_ARRIVALS

    opt = next(p for p in cli.commands["run"].params if p.name == "sample_keys")
    assert opt.default == DEFAULT_SAMPLE_KEYS
    assert opt.type.max == MAX_SAMPLE_KEYS  # type: ignore[attr-defined]
    thin = next(p for p in cli.commands["run"].params if p.name == "sample_thin")
    assert thin.default == THIN_ARRIVALS
    assert thin.type.max == MAX_SAMPLE_THIN  # type: ignore[attr-defined]


def _heavy_tailed(faults: Faults | None = None) -> Topology:
    """20,000 objects of Pareto 1.2 sizes (4 KB up), 2,000 requests/s for 20 s."""
    size = Distribution("pareto", alpha=1.2, minimum=4000.0, cap=20e6)
    site = Site("shop.test", catalog=Catalog(objects=20000, zipf=0.9, seed=1, size=size))
    return topo(rps=2000.0, duration=20.0, objects=20000, warmup=4.0, sites=(site,), faults=faults)


def test_bytes_served_are_calibrated_to_every_arrivals_size() -> None:
    # heavy-tailed sizes (Pareto 1.2): which sizes the sampled keys happen to have
    # would set the byte figures; weighted by the bytes of all arrivals of their
    # stratum instead (known exactly), the bytes served are the full run's
    # (weighted by request counts they were 6 - 8% low here)
    t = _heavy_tailed()
    full = simulate(t).to_dict(deterministic=True)["totals"]
    for keys in (0.0, 1.0):
        samp = simulate(t, sample_rate=0.05, sample_keys=keys).to_dict(deterministic=True)["totals"]
        assert abs(samp["bytes_served"] / full["bytes_served"] - 1.0) < 0.005
        assert abs(samp["byte_hit_ratio"] - full["byte_hit_ratio"]) < 0.03
        assert samp["requests"] == full["requests"]


def test_bytes_fetched_upstream_are_calibrated_like_the_bytes_served() -> None:
    # the bytes the edges fetch and the origin sends take the byte weights too: over
    # six samples the estimates err by 3.7% and 4.0% on average (by 7.5% and 7.6% with
    # the rows' count weights), and the bytes from cache and from upstream move together
    t = _heavy_tailed()
    full = simulate(t).to_dict(deterministic=True)
    fetched, sent = [], []
    for sample_seed in range(1, 7):
        samp = simulate(t, sample_rate=0.05, sample_seed=sample_seed).to_dict(deterministic=True)
        fetched.append(samp["totals"]["origin_bytes"] / full["totals"]["origin_bytes"] - 1.0)
        sent.append(samp["origin"]["bytes"] / full["origin"]["bytes"] - 1.0)
        cached = samp["totals"]["bytes_from_cache"] / full["totals"]["bytes_from_cache"] - 1.0
        assert fetched[-1] * cached <= 0.0  # more fetched, less from cache, and back
    assert sum(map(abs, fetched)) / 6 < 0.05 and sum(map(abs, sent)) / 6 < 0.05, (fetched, sent)


def test_sample_seed_picks_other_keys_under_the_same_traffic(tmp_path: Path) -> None:
    t = topo(rps=1000.0, duration=5.0, objects=5000)
    default = simulate(t, sample_rate=0.1).to_dict(deterministic=True)
    same = simulate(t, sample_rate=0.1, sample_seed=t.seed).to_dict(deterministic=True)
    other = simulate(t, sample_rate=0.1, sample_seed=99).to_dict(deterministic=True)
    assert json.dumps(default) == json.dumps(same)
    assert default["meta"]["sampled"]["estimator"]["sample_seed"] == t.seed
    assert other["meta"]["sampled"]["estimator"]["sample_seed"] == 99
    assert other["meta"]["simulated_requests"] != default["meta"]["simulated_requests"]
    assert other["totals"]["requests"] == default["totals"]["requests"]  # same arrivals
    path = tmp_path / "t.toml"
    path.write_text(TINY_TOPOLOGY)
    out = tmp_path / "r.json"
    args = ["run", str(path), "--quiet", "--sample-rate", "0.5", "--sample-seed", "7", "--json", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["meta"]["sampled"]["estimator"]["sample_seed"] == 7
    bad = CliRunner().invoke(cli, [*args[:-2], "--sample-seed", "-1"])
    assert bad.exit_code == 2 and "--sample-seed" in bad.output


TINY_TOPOLOGY = """
name = "tiny"
seed = 1
[[regions]]
name = "north"
[regions.edge]
nodes = 1
[[sites]]
name = "small.example"
[sites.catalog]
objects = 200
[traffic]
duration = "10s"
peak_rps = 50
"""


def test_byte_weights_keep_errors_out_of_the_bytes_served() -> None:
    # an origin outage: about 15% of the requests get a small error body instead of
    # their object. The byte weights compare every arrival's object bytes with the
    # kept arrivals' (not with the bytes the sample served), so the estimate keeps the
    # share the errors did not serve (compared with the served bytes, it was 21% high).
    # Which keys are sampled still moves the estimate by a few percent: four samples.
    t = _heavy_tailed(Faults(outages=(OriginOutage(8.0, 6.0),)))
    full = simulate(t).to_dict(deterministic=True)["totals"]
    assert full["errors"] > 0.1 * full["requests"]
    served, ratio = [], []
    for sample_seed in (1, 2, 3, 4):
        samp = simulate(t, sample_rate=0.05, sample_seed=sample_seed).to_dict(deterministic=True)["totals"]
        served.append(abs(samp["bytes_served"] / full["bytes_served"] - 1.0))
        ratio.append(abs(samp["byte_hit_ratio"] - full["byte_hit_ratio"]))
    assert max(served) < 0.08 and sum(served) / 4 < 0.03, served  # 0.3 - 5.8% here
    # the byte hit ratio depends more on which of the few huge objects are in the
    # sample (Pareto 1.2 sizes at R = 0.05): 0.004 - 0.067 here
    assert sum(ratio) / 4 < 0.04, ratio


def test_a_key_charged_less_is_still_refused_above_max_object() -> None:
    # a popular key is charged R / p of its bytes, but the object size limit is the
    # full run's: an object over max_object is never stored, sampled or not
    from edgesim.engine import _SampledStore

    entry = CacheEntry(
        200, (), None, 50_000, 0.0, 0.0, 0.0, 60.0, False, False, 0.0, 0.0, None, None, (), (), ""
    )
    key = "a.test\x00d\x00/big"
    store = _SampledStore(10**6, {("a.test", "/big"): 0.01}, max_object_bytes=20_000)
    assert not store.put(key, [entry], "a.test") and store.used_bytes == 0
    roomy = _SampledStore(10**6, {("a.test", "/big"): 0.01}, max_object_bytes=100_000)
    assert roomy.put(key, [entry], "a.test") and roomy.used_bytes == max(1, int(entry.nbytes * 0.01))


@pytest.mark.parametrize(
    ("value", "lifetime"),
    [
        ("public, max-age=31536000, immutable", 31536000.0),
        ("public, max-age=0, s-maxage=30", 30.0),  # a shared cache takes s-maxage
        ("public, max-age=3600", 3600.0),
        ("no-cache, max-age=60", 0.0),  # stored, but revalidated on every request
        ("", 0.0),  # stored (heuristically), no lifetime given
        ("private, no-store", None),
        ("no-store", None),
        ("private, max-age=60", None),
    ],
)
def test_policy_lifetime_is_the_cache_cores(value: str, lifetime: float | None) -> None:
    from edgesim.engine import _policy_lifetime

    assert _policy_lifetime(value) == lifetime


def _one_node(hashed: str | None = None, **kw: Any) -> Topology:
    """One node at 800 requests/s for 30 s, of a site whose every object is a hashed
    image: one immutable policy (or the Cache-Control ``hashed``); ``kw`` for ``topo``."""
    cache = () if hashed is None else (("hashed", hashed),)
    catalog = Catalog(objects=300, zipf=1.1, seed=3, types=(("img", 1.0),))
    opts: dict[str, Any] = {"rps": 800.0, "duration": 30.0, "objects": 300, "nodes": 1, "regions": 1, **kw}
    return topo(sites=(Site("img.test", catalog=catalog, cache=cache),), **opts)


def test_hot_long_lived_keys_are_thinned_and_their_misses_count_once() -> None:
    # one node and a cache that holds everything: each key misses exactly once (its
    # first request), whatever its request rate. Every key is kept (K >= the largest
    # bucket), and the hot ones are thinned: their misses count once and their hits
    # stand for the rest, so the estimate is the full run's exactly. Weighted like the
    # other rows (1 / q), each thinned key's one miss would count 1 / q times.
    t = _one_node()
    full = simulate(t).to_dict(deterministic=True)
    samp = simulate(t, sample_rate=0.5, sample_keys=256).to_dict(deterministic=True)
    est = samp["meta"]["sampled"]["estimator"]
    assert est["thinned_keys"] >= 5 and est["thin_arrivals"] == 20.0
    assert samp["meta"]["simulated_requests"] < 0.7 * full["meta"]["simulated_requests"]
    ft, st = full["totals"], samp["totals"]
    assert st["requests"] == ft["requests"]
    assert st["misses"] == ft["misses"] and st["origin_requests"] == ft["origin_requests"]
    assert abs(st["object_hit_ratio"] - ft["object_hit_ratio"]) < 1e-5
    assert abs(st["bytes_served"] / ft["bytes_served"] - 1.0) < 0.02


@pytest.mark.parametrize("cache_control", ["public, max-age=2", "public, max-age=2, stale-if-error=60"])
def test_thinned_keys_during_an_origin_outage(cache_control: str) -> None:
    # during an outage every request for an expired key goes upstream (and fails, or is
    # answered stale): those rows and fetches come with the request rate, and take the
    # thinned key's rate weight, not once each (counted once, the estimate had 31% too
    # few origin requests and 40% too few stale answers)
    t = _one_node(cache_control, duration=20.0, faults=Faults(outages=(OriginOutage(8.0, 6.0),)))
    full = simulate(t).to_dict(deterministic=True)["totals"]
    samp = simulate(t, sample_rate=0.5, sample_keys=256).to_dict(deterministic=True)
    assert samp["meta"]["sampled"]["estimator"]["thinned_keys"] >= 3
    st = samp["totals"]
    assert full["errors"] + full["stale"] > 4000  # a third of the requests
    assert abs(st["origin_requests"] / full["origin_requests"] - 1.0) < 0.02
    assert abs((st["errors"] + st["stale"]) / (full["errors"] + full["stale"]) - 1.0) < 0.03
    assert abs(st["object_hit_ratio"] - full["object_hit_ratio"]) < 0.01


def test_thinning_sees_every_purge() -> None:
    # a deploy every second purges the site: each key misses once per deploy window, so
    # its thinned arrivals must come often enough within one window (thinned for the
    # run's length instead, the estimate saw 16% too few misses)
    deploys = tuple(Deploy("img.test", at=float(k), new_fraction=0.1) for k in range(1, 20))
    t = _one_node(duration=20.0, deploys=deploys)
    full = simulate(t).to_dict(deterministic=True)["totals"]
    samp = simulate(t, sample_rate=0.5, sample_keys=256).to_dict(deterministic=True)
    assert samp["meta"]["sampled"]["estimator"]["thinned_keys"] >= 1
    assert abs(samp["totals"]["misses"] / full["misses"] - 1.0) < 0.01
    assert abs(samp["totals"]["object_hit_ratio"] - full["object_hit_ratio"]) < 0.002


def test_thinned_share_follows_the_arrivals_per_lifetime() -> None:
    t = _one_node()
    eng = _Engine(t, 1, None, 0.5, 256.0, None, 20.0)
    m = eng.sites[0]
    assert m.thin_of is not None
    thinned = [i for i in range(len(m.urls)) if m.thin_of[i] < 1.0]
    # the most popular keys, each at most half simulated; more popular, thinner
    assert thinned == list(range(len(thinned))) and len(thinned) == len(eng.thinned)
    assert all(m.thin_of[i] <= 0.5 for i in thinned)
    assert list(m.thin_of[: len(thinned)]) == sorted(m.thin_of[: len(thinned)])
    # rank 1: about 800 / s x 30 s x p1 arrivals; a 20th of those per lifetime (the run)
    p1 = float(m.cdf[0])
    assert m.thin_of[0] == pytest.approx(20.0 / (800.0 * 30.0 * p1), rel=0.05)
    # a lifetime of 1 s: only keys with 40 or more arrivals a second are thinned, to
    # 20 of them per second
    ms = _Engine(_one_node("public, max-age=1"), 1, None, 0.5, 256.0, None, 20.0).sites[0]
    assert ms.thin_of is not None
    per_second = 800.0 * np.diff(ms.cdf, prepend=0.0)
    assert [i for i, q in enumerate(ms.thin_of) if q < 1.0] == np.flatnonzero(per_second >= 40.0).tolist()
    assert ms.thin_of[0] == pytest.approx(20.0 / per_second[0], rel=0.05)
    # lifetime 0 (revalidated every time): never thinned
    assert not _Engine(_one_node("public, max-age=0"), 1, None, 0.5, 256.0, None, 20.0).thinned
    # nor in a cache that fills faster than a thinned key comes back: 2 MB edges fill
    # with 20,000 objects' bytes in about a second, and a key whose thinned arrivals
    # were further apart would be evicted in between more often than in the full run
    small = topo(rps=2000.0, duration=20.0, objects=20000, memory=2 * 2**20)
    assert not _Engine(small, 1, None, 0.05, 2.0, None, 20.0).thinned
    roomy = topo(rps=2000.0, duration=20.0, objects=20000, memory=2**30)  # holds them all
    assert _Engine(roomy, 1, None, 0.05, 2.0, None, 20.0).thinned
    # and none when thinning is off, or in a plain key sample (K = 0)
    assert not _Engine(t, 1, None, 0.5, 256.0, None, 0.0).thinned
    assert not _Engine(t, 1, None, 0.5, 0.0, None, 20.0).thinned


def test_keys_no_shared_cache_stores_are_sampled_at_the_rate() -> None:
    # a policy that is never stored never hits, whatever the key: no key of it is
    # favoured (no policy head, no bucket sampled above the rate)
    site = Site(
        "shop.test",
        catalog=Catalog(objects=20000, zipf=0.9, seed=2, types=(("html", 0.5), ("img", 0.5))),
        cache=(("html", "private, no-store"),),
    )
    eng = _Engine(topo(duration=1.0, sites=(site,)), 1, None, 0.01, 1.0)
    m = eng.sites[0]
    cat = eng.origin.sites[m.host].deploy.catalog
    assert cat is not None
    html = [u for u, k in zip(m.urls, cat.kinds(), strict=True) if k == "html"]
    assert eng.policy_heads == {0: 1}  # the images' only
    assert not any((m.host, u) in eng.charge for u in html)
    kept = sum(bool(m.kept_of[m.urls.index(u)]) for u in html[:2000])
    assert kept < 60  # about 1% of them (20 expected), not the top buckets whole


@pytest.mark.parametrize("bad", [-1.0, float("nan"), 2e6])
def test_bad_sample_thin_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="sample_thin"):
        simulate(topo(duration=1.0), sample_rate=0.5, sample_thin=bad)


def test_cli_sample_thin(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOPOLOGY)
    bad = CliRunner().invoke(
        cli, ["run", str(path), "--sample-rate", "0.5", "--sample-thin", "-1", "--quiet"]
    )
    assert bad.exit_code == 2 and "--sample-thin" in bad.output
    out = tmp_path / "r.json"
    ok = CliRunner().invoke(
        cli, ["run", str(path), "--sample-rate", "0.5", "--sample-thin", "0", "--quiet", "--json", str(out)]
    )
    assert ok.exit_code == 0, ok.output
    est = json.loads(out.read_text())["meta"]["sampled"]["estimator"]
    assert est["thin_arrivals"] == 0.0 and est["thinned_keys"] == 0
    loud = CliRunner().invoke(cli, ["run", str(path), "--sample-rate", "0.5", "--sample-thin", "5"])
    assert loud.exit_code == 0 and "--sample-keys 0.5, --sample-thin 5)" in loud.stderr


def test_an_interrupted_sampled_run_counts_the_arrivals_it_reached() -> None:
    # A sampled run counts every arrival of a block when it takes it (about 8,192
    # here). Stopped with Ctrl-C as it takes its third block, it counts the arrivals of
    # the first two only; counting the third as well made the estimate about 1.5 times
    # the requests that came.
    from edgesim.engine import _Arrivals

    t = topo(rps=2000.0, duration=30.0, objects=20000)
    reached: list[float] = []

    def stop_at_the_third_block(now: float, end: float, n: int) -> None:
        reached.append(now)
        if len(reached) == 3:
            raise KeyboardInterrupt

    res = simulate(t, sample_rate=0.05, progress=stop_at_the_third_block).to_dict(deterministic=True)
    assert res["meta"]["partial"] is True
    ref = _Engine(t, t.seed, None, 0.05, 1.0, None, 20.0)
    src = _Arrivals(ref)
    times: list[float] = []
    while src.start() < reached[-1]:
        times.extend(src.block()[0].tolist())
    came = sum(1 for x in times if x < reached[-1])
    assert came > 10_000
    assert abs(res["totals"]["requests"] / came - 1.0) < 0.05


def test_a_redirect_source_that_is_a_file_is_one_key(tmp_path: Path) -> None:
    # "/page-0.html" is both the most popular file (kept whole) and a redirect source
    # (drawn for a share of the arrivals, sampled at R): its arrivals either way are one
    # key's, kept or skipped together, in the file's stratum
    rules = tmp_path / "_redirects"
    rules.write_text("/page-0.html /moved.html 301\n/gone.html /moved.html 301\n")
    site = Site(
        "pages.test",
        catalog=Catalog(objects=200, zipf=1.0, seed=4, types=(("html", 1.0),)),
        rules_files=(rules,),
        redirect_share=0.3,
    )
    eng = _Engine(topo(duration=1.0, sites=(site,)), 1, None, 0.01, 1.0)
    m = eng.sites[0]
    n = len(m.urls)
    assert m.urls[0] == "/page-0.html" and m.redirects == ["/page-0.html", "/gone.html"]
    assert m.kept_of[0] and m.kept_of[n]  # kept with the file
    assert m.stratum_of[n] == m.stratum_of[0] == m.stratum("/page-0.html")
    assert m.stratum_of[n + 1] != m.stratum_of[0]  # a source that is no file: its own
    # arrivals read their stratum by object, other fetches by target: the same
    assert m.stratum_list == m.stratum_of.tolist() == [m.stratum(u) for u in m.urls + m.redirects]
    assert m.stratum("/nowhere.html") == -1


def test_the_html_page_of_a_sampled_run_says_so() -> None:
    from edgesim.report import render_html

    t = topo(rps=400.0, duration=4.0, objects=2000)
    samp = render_html(simulate(t, sample_rate=0.25).to_dict(deterministic=True), "")
    full = render_html(simulate(t).to_dict(deterministic=True), "")
    assert "key sample at rate 0.25" in samp and "estimates for the full traffic, weighted" in samp
    assert "key sample" not in full

"""A trace as a topology's traffic: mapping records onto regions, sites and objects."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edgesim._topoload import parse_topology
from edgesim._tracetraffic import load_trace_traffic
from edgesim.errors import TopologyError, TraceError
from edgesim.topology import Topology
from origin._catalog import Catalog
from origin._config import CatalogSpec

TOPO = """\
[[regions]]
name = "eu"
client_share = 0.5

[[regions]]
name = "us"
client_share = 0.5

[[sites]]
name = "a.example"
share = 0.75
[sites.catalog]
objects = 10

[[sites]]
name = "b.example"
share = 0.25
[sites.catalog]
objects = 10

[traffic]
duration = "100s"
warmup = "0s"
trace = "t.csv"
"""


def topology(tmp_path: Path, trace_csv: str, extra: str = "") -> Topology:
    (tmp_path / "t.csv").write_text(textwrap.dedent(trace_csv))
    return parse_topology(TOPO + extra, path=tmp_path / "t.toml")


def test_placed_trace_maps_names_objects_and_first_sizes(tmp_path: Path) -> None:
    topo = topology(
        tmp_path,
        """\
        time,key,size,region,site
        10,x,100,us,a.example
        11,y,200,eu,B.example
        12,x,999,eu,a.example
        13,z,300,us,a.example
        150,w,5,us,a.example
        """,
    )
    tt = load_trace_traffic(topo)
    assert list(tt.times) == [0.0, 1.0, 2.0, 3.0]  # from the first record; 140 s >= duration
    assert tt.dropped == 1
    assert list(tt.regions) == [1, 0, 0, 1]
    assert list(tt.sites) == [0, 1, 0, 0]
    assert list(tt.objects) == [0, 0, 0, 1]  # x is object 0 of a, y object 0 of b
    assert tt.site_sizes == ((100, 300), (200,))  # the first size seen for a key


def test_unsorted_records_are_replayed_in_time_order(tmp_path: Path) -> None:
    topo = topology(tmp_path, "time,key,size,region,site\n5,b,1,eu,a.example\n2,a,1,eu,a.example\n")
    tt = load_trace_traffic(topo)
    assert list(tt.times) == [0.0, 3.0]
    assert tt.site_sizes[0] == (1, 1)
    assert list(tt.objects) == [0, 1]


def test_unplaced_keys_stick_to_one_site_by_share(tmp_path: Path) -> None:
    rows = "".join(f"{i / 100},k{i % 400},10\n" for i in range(2000))
    topo = topology(tmp_path, "time,key,size\n" + rows)
    tt = load_trace_traffic(topo)
    assert set(tt.regions) == {-1}  # drawn by client_share in the engine
    keys_of = [len(s) for s in tt.site_sizes]
    assert sum(keys_of) == 400  # every key in exactly one site
    assert 0.65 < keys_of[0] / 400 < 0.85  # share 0.75
    # the same key always lands on the same site (and object)
    seen: dict[tuple[int, int], int] = {}
    for i, (si, obj) in enumerate(zip(tt.sites, tt.objects, strict=True)):
        assert seen.setdefault((si, obj), i % 400) == i % 400


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("1,x,1,mars,a.example", "region 'mars' is not a region of the topology (expected one of: eu, us)"),
        ("1,x,1,eu,c.example", "site 'c.example' is not a site of the topology"),
    ],
)
def test_unknown_names_are_clear_errors(tmp_path: Path, row: str, expected: str) -> None:
    topo = topology(tmp_path, "time,key,size,region,site\n" + row + "\n")
    with pytest.raises(TopologyError) as info:
        load_trace_traffic(topo)
    assert str(info.value).startswith(str(tmp_path / "t.csv") + ": ")
    assert expected in str(info.value)


def test_a_directory_site_cannot_take_trace_keys(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("hi")
    text = TOPO.replace("[sites.catalog]\nobjects = 10\n\n[traffic]", 'directory = "site"\n\n[traffic]')
    (tmp_path / "t.csv").write_text("time,key,size,region,site\n1,x,1,eu,b.example\n")
    topo = parse_topology(text, path=tmp_path / "t.toml")
    with pytest.raises(TopologyError, match=r"b\.example.*needs sites with a \[sites\.catalog\]"):
        load_trace_traffic(topo)


def test_a_broken_trace_names_its_line(tmp_path: Path) -> None:
    topo = topology(tmp_path, "time,key,size\n1,x,1\n2,y,lots\n")
    with pytest.raises(TraceError, match=r"t\.csv:3"):
        load_trace_traffic(topo)


def test_fixed_sizes_keep_kinds_and_urls() -> None:
    spec = CatalogSpec(50, seed=3)
    fixed = CatalogSpec(50, seed=3, fixed_sizes=tuple(range(1000, 1050)))
    a, b = Catalog(spec), Catalog(fixed)
    assert [a.path(i) for i in range(50)] == [b.path(i) for i in range(50)]
    assert [b.size(i) for i in range(50)] == list(range(1000, 1050))
    assert [a.size(i) for i in range(50)] != [b.size(i) for i in range(50)]
    # manifests leave the sizes out: an edge rebuilding the file set gets the same URLs
    assert "fixed_sizes" not in fixed.as_dict()
    rebuilt = Catalog.from_manifest(fixed.as_dict())
    assert all(rebuilt.exists(b.path(i)) for i in range(50))
    with pytest.raises(ValueError, match="3 sizes for 50 objects"):
        CatalogSpec(50, fixed_sizes=(1, 2, 3))


def test_objects_are_numbered_by_popularity(tmp_path: Path) -> None:
    # z is requested most, then x; y and w once each (ties keep first appearance)
    rows = ["0,x,10", "1,y,20", "2,z,30", "3,z,31", "4,x,11", "5,z,32", "6,w,40"]
    topo = topology(tmp_path, "time,key,size,region,site\n" + "".join(f"{r},eu,a.example\n" for r in rows))
    tt = load_trace_traffic(topo)
    assert list(tt.objects) == [1, 2, 0, 0, 1, 0, 3]
    assert tt.site_sizes[0] == (30, 10, 20, 40)  # each key's first size, by rank


def test_a_compressed_trace_is_the_same_traffic(tmp_path: Path) -> None:
    import zstandard

    rows = "time,key,size,region,site\n" + "".join(
        f"{i},k{i % 7},{100 + i},{'eu' if i % 3 else 'us'},{'a.example' if i % 4 else 'b.example'}\n"
        for i in range(60)
    )
    plain = topology(tmp_path, rows)
    (tmp_path / "t.csv.zst").write_bytes(zstandard.ZstdCompressor().compress(rows.encode()))
    packed = parse_topology(TOPO.replace('"t.csv"', '"t.csv.zst"'), path=tmp_path / "t.toml")
    assert packed.traffic.trace_format == "csv"  # by the name, less its compression suffix
    a, b = load_trace_traffic(plain), load_trace_traffic(packed)
    assert (list(a.times), list(a.regions), list(a.sites), list(a.objects)) == (
        list(b.times),
        list(b.regions),
        list(b.sites),
        list(b.objects),
    )
    assert a.site_sizes == b.site_sizes and len(a.times) == 60


def test_a_corrupt_compressed_trace_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "t.csv.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(40))
    topo = parse_topology(TOPO.replace('"t.csv"', '"t.csv.gz"'), path=tmp_path / "t.toml")
    with pytest.raises(TraceError, match=r"t\.csv\.gz: corrupt gzip data"):
        load_trace_traffic(topo)

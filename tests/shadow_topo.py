"""The [shadow] test topology shared by the fast engine's and the Trio engine's tests:
3 edge nodes in two regions, one site whose rules change from v1 to v2."""

from __future__ import annotations

from pathlib import Path

V1 = "/old-shop /page-1.html 301\n/promo/* /page-2.html 302\n"
V2 = "/old-shop /page-3.html 301\n/promo/* /page-2.html 302\n"

TOPOLOGY = """\
name = "shadowed"
seed = 3

[[regions]]
name = "eu-west"
client_share = 0.5

[regions.edge]
nodes = 2
workers = 16
service_time = "0.5ms"

[[regions]]
name = "us-east"
client_share = 0.5

[regions.edge]
nodes = 1
workers = 16
service_time = "0.5ms"

[[sites]]
name = "shop.test"
rules = "v1/_redirects"
redirect_share = 0.3

[sites.catalog]
objects = 300

[traffic]
duration = "4s"
peak_rps = 300
diurnal = "flat"

[shadow]
{shadow}
"""


def write_topology(tmp_path: Path, shadow: str) -> Path:
    """The topology file with ``shadow`` as the body of its [shadow] table, and the v1
    and v2 rule files beside it."""
    for name, text in (("v1", V1), ("v2", V2)):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "_redirects").write_text(text)
    path = tmp_path / "t.toml"
    path.write_text(TOPOLOGY.format(shadow=shadow))
    return path

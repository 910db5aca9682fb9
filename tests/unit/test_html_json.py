"""The JSON block of edgesim's HTML pages (run report, mrc) is valid JSON when read back."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from helpers import run_cli, topo

from edgesim._svg import script_json
from edgesim.engine import simulate
from edgesim.report import render_html
from edgesim.traces import Trace, write_trace


class _ScriptText(HTMLParser):
    """The raw text of <script id=...> as a browser hands it to a script."""

    def __init__(self, ident: str) -> None:
        super().__init__(convert_charrefs=True)
        self.ident, self.inside, self.text, self.count = ident, False, "", 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.inside = tag == "script" and ("id", self.ident) in attrs
        self.count += self.inside

    def handle_endtag(self, tag: str) -> None:
        self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.text += data


def _block(page: str, ident: str) -> Any:
    p = _ScriptText(ident)
    p.feed(page)
    assert p.count == 1
    return json.loads(p.text)


def test_script_json_round_trips_text_that_could_end_the_element() -> None:
    data = {"a": '</script><script>alert("x")</script>', "b": "<!-- & &amp; \u2028\u2029 >", "c": [1, 2.5]}
    text = script_json(data)
    assert not set(text) & set("<>&\u2028\u2029")
    assert _block(f'<p>x</p><script type="application/json" id="d">{text}</script>', "d") == data


def test_run_report_page_embeds_the_report_as_json() -> None:
    report = simulate(topo(rps=50.0, duration=2.0, objects=100)).to_dict(deterministic=True)
    report["meta"]["note"] = 'a "quoted" <b>&</b> name'
    page = render_html(report, "")
    assert _block(page, "report") == json.loads(json.dumps(report))


def test_mrc_page_embeds_the_curve_as_json(tmp_path: Path) -> None:
    from array import array

    path = tmp_path / "t.csv"
    write_trace(path, Trace(array("d", range(6)), array("Q", [0, 1, 0, 2, 0, 1]), array("q", [5] * 6)), "csv")
    html = tmp_path / "c.html"
    code, out, err = run_cli("mrc", str(path), "--sizes", "10B,1KB", "--json", "--html", str(html))
    assert code == 0, err
    data = json.loads(out)
    embedded = _block(html.read_text(), "curve")
    assert embedded["points"] == data["points"] and embedded["requests"] == 6

#!/usr/bin/env python3
"""Compare edgesim's matcher with Netlify's engine on a recorded corpus; print JSON.

Usage (from the repository root, with the extension built):

    python native/bench/corpus_diff.py [CORPUS.jsonl EXPECTED.jsonl]
        [--engine native|reference] [--known known-differences.json] [--brief]

Defaults: the seed-1 corpus and expectations in tests/data/redirects and its
known-differences.json. The output has total/agree/differ counts, counts per corpus
category and per spec rule of the known differences, the ids of differences the
known-differences list does not explain, list entries that no longer differ
("stale_known"), and (unless --brief) every difference with both outcomes.

The request building and comparison are those of tests/native/test_corpus.py (loaded
from there, so the test and this report cannot drift apart). Exit status 1 when there
is an unexplained or stale difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _comparison_module():  # type: ignore[no-untyped-def]
    path = ROOT / "tests" / "native" / "test_corpus.py"
    spec = importlib.util.spec_from_file_location("edgesim_corpus_comparison", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))  # after PYTHONPATH, so a chosen build wins
    cmp = _comparison_module()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("corpus", nargs="?", type=Path, default=cmp.CORPUS)
    p.add_argument("expected", nargs="?", type=Path, default=cmp.EXPECTED)
    p.add_argument("--engine", choices=["native", "reference"], default="native")
    p.add_argument("--known", type=Path, default=cmp.KNOWN)
    p.add_argument("--brief", action="store_true", help="counts only, no difference list")
    args = p.parse_args(argv)

    from edgesim.redirects import ReferenceRuleSet, RuleSet

    engine = RuleSet if args.engine == "native" else ReferenceRuleSet
    summary = cmp.summarize(
        engine, cmp.load_corpus(args.corpus), cmp.load_expected(args.expected), cmp.load_known(args.known)
    )
    summary = {"engine": args.engine, **summary}
    if args.brief:
        del summary["differences"]
    json.dump(summary, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 1 if summary["unexplained"] or summary["stale_known"] else 0


if __name__ == "__main__":
    sys.exit(main())

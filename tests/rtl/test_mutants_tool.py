"""The mutation-testing tool's mechanics (``make mutants`` itself is long and not part of the suite)."""

from collections import Counter

import pytest

from mutants.catalogue import CATALOGUE, TEST_SETS, Mutant
from mutants.run import apply, main, markdown


def test_catalogue_size_coverage_and_names():
    assert len(CATALOGUE) >= 30
    assert len({m.name for m in CATALOGUE}) == len(CATALOGUE)
    files = Counter(m.file for m in CATALOGUE)
    for block in ("gearbox", "decode", "lanes", "correct", "requant", "tile"):
        assert files[f"rtl/{block}.py"] >= 2, block
    assert all(m.tests in TEST_SETS for m in CATALOGUE)
    assert all(m.equivalent is None or len(m.equivalent) > 20 for m in CATALOGUE)   # a reason, not a flag


def test_apply_replaces_exactly_one_match_and_reports_stale_anchors():
    rule = Mutant("x", "f.py", r"count < size \+ W\)", "count <= size + W)", "d", "tile")
    assert apply(rule, "a = (count < size + W)\n") == "a = (count <= size + W)\n"
    assert apply(rule, "a = (count < limit)\n") is None                        # anchor gone: STALE
    assert apply(rule, "(count < size + W)\n(count < size + W)\n") is None     # ambiguous: STALE too


def test_markdown_table_lists_every_status():
    report = {"results": [
        {"name": "a", "file": "rtl/x.py", "status": "KILLED", "seconds": 1.0, "description": "bug", "detail": "F t"},
        {"name": "b", "file": "rtl/x.py", "status": "STALE", "description": "bug", "detail": "anchor gone"},
        {"name": "c", "file": "rtl/x.py", "status": "EQUIVALENT", "description": "bug", "detail": "same output"},
    ], "killed": 1, "survived": 0, "stale": 1, "equivalent": 1, "score": "1/1"}
    text = markdown(report, "make mutants", 3.0)
    assert "score **1/1**" in text and "| b | rtl/x.py | STALE |" in text and "same output" in text


def test_unknown_mutant_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["--only", "no-such-mutant"])
    assert "unknown mutant(s) ['no-such-mutant']" in capsys.readouterr().err

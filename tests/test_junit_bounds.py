"""A huge JUnit report: parsed as a stream in bounded memory, scored over every case, and
stored as at most MAX_ITEMS items per experiment, with a note."""

from __future__ import annotations

import tracemalloc

import pytest

from engine.evaluators.tests import MAX_ITEMS, ReportTooBig, parse_junit
from tests.conftest import write
from tests.test_loop import run_spec


def report(cases: int, failing_every: int = 10, output: str = "") -> bytes:
    rows = []
    for i in range(cases):
        body = (f'<failure message="case {i} failed">trace {i}</failure>'
                if i % failing_every == 0 else "")
        out = f"<system-out>{output}</system-out>" if output else ""
        rows.append(f'<testcase classname="suite" name="test_{i:06d}">{body}{out}</testcase>')
    return ("<testsuites><testsuite name='s'>" + "".join(rows)
            + "</testsuite></testsuites>").encode()


def test_a_huge_report_is_parsed_in_bounded_memory():
    xml = report(15_000, output="x" * 300)  # ~6 MB
    tracemalloc.start()
    try:
        parsed = parse_junit(xml)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (parsed.total, parsed.passed) == (15_000, 13_500)
    assert len(parsed.items) == MAX_ITEMS
    assert [i.passed for i in parsed.items] == [False] * 1500 + [True] * 500  # failures first
    assert peak < 8 * 1024 * 1024, peak  # the tree of this report would take >50 MB


def test_a_report_past_the_bound_is_refused():
    with pytest.raises(ReportTooBig):
        parse_junit(report(1000), limit=10_000)


async def test_a_run_on_a_huge_suite_stores_a_capped_number_of_items_with_a_note(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "conf.yaml", "limit: 1\n")
    write(ws / "make_report.py", """
        import yaml
        limit = yaml.safe_load(open("conf.yaml"))["limit"]
        cases = "".join(
            f'<testcase classname="s" name="t{i}">'
            + ('<failure message="no"/>' if i % 7 >= limit else '') + '</testcase>'
            for i in range(30_000))
        open("report.xml", "w").write(f"<testsuite>{cases}</testsuite>")
    """)
    spec = write(tmp_path / "t.yaml", """
        name: suite
        target: {workspace: ws, files: [conf.yaml], protected: [make_report.py]}
        mutator: {kind: params, file: conf.yaml, seed: 1, params: {limit: {type: int, min: 0, max: 7}}}
        evaluate: {kind: tests, command: python make_report.py}
        stop: {max_rounds: 1}
    """)
    store = await run_spec(tmp_path / "a.db", spec)
    rows = store.experiments(store.get_run("suite")["id"])
    for row in rows:
        assert len(store.item_results(row["id"])) <= MAX_ITEMS
    base = rows[0]
    assert base["score"] == pytest.approx(1 / 7, abs=1e-3)  # every case counted
    assert "left out; the score counts all" in base["log_tail"]

"""bench/results.md agrees with the program as it is now.

The committed results are written by `make bench` (bench/__main__.py); their
program-scale table counts the resources and remote commands the program
declares for 1, 10, 100 and 200 apps. When the program changes what it
declares, the committed file is stale: this test says so, and what to run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import scale
from tests.conftest import TEST_KEY
from tests.program import run_program

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results.md"
STALE = "bench/results.md is out of date with the program ({what}); run `make bench` (under the lab lock) and commit it"


def _table(text: str, heading: str) -> list[list[str]]:
    m = re.search(rf"^### {re.escape(heading)}.*?\n\n(.*?)(?:\n\n|\Z)", text, re.S | re.M)
    assert m, f"bench/results.md has no '### {heading}' table; run `make bench`"
    rows = [line.strip("|").split("|") for line in m.group(1).splitlines()[2:]]
    return [[c.strip() for c in r] for r in rows]


def _written_by_make_bench(text: str) -> bool:
    return bool(re.search(r"^Produced by: `[^`]*make bench`", text, re.M))


@pytest.fixture(scope="module")
def results() -> str:
    return RESULTS.read_text()


@pytest.fixture(scope="module")
def counts(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[int, int]]:
    """apps -> (resources, remote commands), as bench.scale counts them (its configs, the same program).

    1, 10 and 100 apps are run; 200 apps (3 s) is the 100-app count plus 100 times the
    per-app increment from 10 to 100 apps, which is exact: each app adds the same resources."""
    work = tmp_path_factory.mktemp("bench-scale")
    out = {}
    for n in (1, 10, 100):
        run = run_program(scale.app_config(n, work, TEST_KEY), stack="dev")
        out[n] = (len(run.resources), len(run.commands))
    per_app = tuple((out[100][i] - out[10][i]) // 90 for i in range(2))
    assert all((out[100][i] - out[10][i]) == 90 * per_app[i] for i in range(2))
    assert all((out[10][i] - out[1][i]) == 9 * per_app[i] for i in range(2)), "resources are not linear in apps"
    out[200] = (out[100][0] + 100 * per_app[0], out[100][1] + 100 * per_app[1])
    assert sorted(out) == sorted(scale.SIZES), "bench.scale measures other sizes: update this test"
    return out


def test_results_are_written_by_make_bench(results: str) -> None:
    assert _written_by_make_bench(results), "bench/results.md must be the output of `make bench`, not pasted"
    assert (RESULTS.with_suffix(".png")).exists()


def test_program_scale_counts_match_the_program(results: str, counts: dict[int, tuple[int, int]]) -> None:
    table = _table(results, "Program scale")
    written = {int(r[0]): (int(r[1]), int(r[2])) for r in table}
    assert written == counts, STALE.format(what=f"apps: (resources, commands) written {written}, now {counts}")


def test_first_up_runs_every_command(results: str, counts: dict[int, tuple[int, int]]) -> None:
    table = _table(results, "Remote commands a change runs")
    first = next(r for r in table if r[0].startswith("first up"))
    assert first[0] == f"first up ({scale.COUNT_APPS} apps)"
    assert int(first[1]) == counts[scale.COUNT_APPS][1], STALE.format(
        what=f"first up of {scale.COUNT_APPS} apps: {first[1]} commands written, {counts[scale.COUNT_APPS][1]} now")


def test_the_check_reads_the_table() -> None:
    """The table reader finds rows in a page of the shape bench/report.py writes."""
    page = ("Produced by: `make bench`\n\n### Program scale: x\n\n| apps | resources | remote commands |\n"
            "|---:|---:|---:|\n| 1 | 17 | 5 |\n| 10 | 44 | 23 |\n\n## next\n")
    assert _table(page, "Program scale") == [["1", "17", "5"], ["10", "44", "23"]]
    assert _written_by_make_bench(page) and not _written_by_make_bench("Produced by: hand\n")

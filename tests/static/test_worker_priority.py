"""Worker priority in the rendered deploy script (issue 23 point 15), without a host.

Nice is per thread on Linux. The deploy script once started a worker at nice 10
and reniced its PID back to 0 once warm, which left every other thread of the
worker (httpuv's I/O thread among them) at 10 for good. Here: the script starts
and warms workers without renicing them, and the function that repairs what an
earlier version left behind renices every thread of the app's workers, and
only theirs, run in bash against stand-ins for `ps` and `renice`.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import local_overrides
from tests.program import run_stack
from tests.static.rendered import script_of

pytestmark = pytest.mark.static


@pytest.fixture(scope="module")
def deploy() -> str:
    run = run_stack("local", local_overrides())
    return script_of(run.named("hello-deploy").inputs["create"])  # type: ignore[union-attr]


def _function(script: str, name: str) -> str:
    m = re.search(rf"^{name}\(\) {{.*?^}}\n", script, re.S | re.M)
    assert m, f"the deploy script has no {name}()"
    return m.group(0)


def test_workers_are_started_and_warmed_without_a_renice(deploy: str) -> None:
    code = [line.split(" #")[0].strip() for line in deploy.splitlines() if not line.strip().startswith("#")]
    start = [line.split(" #")[0] for line in _function(deploy, "start_gated").splitlines()
             if not line.strip().startswith("#")]  # fmt: skip
    assert not [line for line in start if "nice" in line], start
    renices = [line for line in code if re.search(r"\brenice\b", line)]
    # the script's own priority ($$: inherited whole by what it forks) and the per-thread repair only
    assert renices == ['renice -n 10 -p $$ >/dev/null || true', 'renice -n 0 -p "$tid" >/dev/null 2>&1 || true'], \
        renices


PS = """plumber-hello@22800.service   101   101   0
plumber-hello@22800.service   101   102  10
plumber-hello@22800.service   101   103  10
plumber-hello@22801.service   201   201   0
plumber-hello@22801.service   201   202  10
plumber-hello2@22900.service  301   301  10
nginx.service                 401   402  10
-                             501   501  10
"""


def test_threads_an_earlier_version_left_low_get_their_priority_back(deploy: str, tmp_path: Path) -> None:
    """Every thread of hello's workers at nice 10 is reniced to 0, by its thread id; hello2's and nginx's are not."""
    (tmp_path / "ps.out").write_text("\n".join(" ".join(line.split()[:1] + line.split()[2:]) for line in PS.splitlines()))
    program = "\n".join([
        "set -euo pipefail",
        f"cd {tmp_path}",
        "ps() { [ \"$*\" = '-eLo unit=,tid=,ni=' ] && cat ps.out; }",  # unit, tid, nice (as ps -eLo prints them)
        "renice() { echo \"$*\" >>renice.log; }",
        "APP=hello",
        _function(deploy, "restore_priority"),
        "restore_priority",
        "cat renice.log 2>/dev/null || true",
    ])
    res = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    calls = res.stdout.splitlines()
    print(f"renice calls: {calls}")
    assert calls == ["-n 0 -p 102", "-n 0 -p 103", "-n 0 -p 202"]

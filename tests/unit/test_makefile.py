"""Every make target runs the project's own virtualenv (issue 23 point 14).

`make deps` makes it (python3 -m venv, without the system's site packages) and pip-installs the
requirement files there; every target's Python is that virtualenv's, so a pytest plugin installed
in the system Python (hypothesis crashed `make security-report` at exit) cannot change a result,
and nothing is pip-installed into the system Python. `make test PYTHON=<a venv's python>` still
runs everything with that one, and .ci/run runs the README's test command as written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = (ROOT / "Makefile").read_text()
TARGETS = sorted(set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", MAKEFILE, re.M)))
# `python3 -m pytest`, `$VENV/bin/python -m pip`, `/usr/bin/python3 -c ...`: the interpreter and what it runs
PYTHON_RUN = re.compile(r"(?<![\w./-])((?:[\w.~/-]*/)?python[0-9.]*)\s+(-m\s+\S+|-c|\S+\.py)")


def make_n(*args: str) -> list[str]:
    """The commands `make -n` would run (nothing runs), with no PYTHON or VENV from this environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VENV", "MAKEFLAGS", "MAKELEVEL")}
    res = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def python_runs(lines: list[str]) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for line in lines for m in PYTHON_RUN.finditer(line)]


def test_the_makefile_has_the_targets_this_checks() -> None:
    assert {"test", "deps", "lint", "test-unit", "security-report", "bench", "lab"} <= set(TARGETS)


@pytest.mark.parametrize("target", TARGETS)
def test_every_python_a_target_runs_is_the_virtualenvs(target: str) -> None:
    lines = make_n(target)
    for interpreter, what in python_runs(lines):
        if what == "-m venv":  # making the virtualenv itself: the one use of the system's python3
            assert interpreter == "python3"
            continue
        assert interpreter == ".venv/bin/python", f"make {target} runs {interpreter} {what}"
    joined = "\n".join(lines)
    unquoted = re.sub(r"\"[^\"]*\"|'[^']*'", "", joined)  # messages aside
    assert not re.search(r"(^|[;&|(]|\bthen|\bdo)\s*(pip3?|pytest)\s", unquoted, re.M), f"make {target} runs pip or pytest bare"
    assert "--system-site-packages" not in unquoted


def test_deps_makes_the_virtualenv_and_installs_into_it_only() -> None:
    lines = make_n("deps")
    runs = python_runs(lines)
    assert ("python3", "-m venv") in runs
    assert (".venv/bin/python", "-m pip") in runs
    assert [r for r in runs if r[1] == "-m pip"] == [(".venv/bin/python", "-m pip")]


def test_python_given_on_the_command_line_is_used_everywhere() -> None:
    """`.ci/run`'s old form and a developer's own virtualenv: make test PYTHON=<a venv's python>."""
    other = "/opt/ci-venv/bin/python"
    runs = python_runs(make_n("test", f"PYTHON={other}"))
    assert runs and all(i == other for i, what in runs if what != "-m venv"), runs


def _venv_check(python: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VENV", "MAKEFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "--no-print-directory", "venv", f"PYTHON={python}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_deps_refuses_the_system_python_and_a_venv_that_sees_its_packages(tmp_path: Path) -> None:
    system = subprocess.run(["python3", "-c", "import sys; print(sys.base_prefix + '/bin/python3')"],
                            capture_output=True, text=True, check=True).stdout.strip()
    shared = tmp_path / "shared"
    subprocess.run(["python3", "-m", "venv", "--without-pip", "--system-site-packages", str(shared)], check=True)
    for python in (system, str(shared / "bin" / "python")):
        res = _venv_check(python)
        assert res.returncode != 0 and "is not a virtualenv of its own" in res.stderr, (python, res.stderr)
        assert "pip installs nothing into the system Python" in res.stderr


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="these tests run outside a virtualenv")
def test_deps_accepts_a_virtualenv_of_its_own() -> None:
    assert "include-system-site-packages = true" not in Path(sys.prefix, "pyvenv.cfg").read_text()
    res = _venv_check(sys.executable)
    assert res.returncode == 0, res.stderr


def test_ci_runs_the_readmes_test_command_as_written() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [ln.strip() for ln in first_block.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert commands[-1] == "make test"  # the README's test command, on its first screen
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in ci
    assert not [ln for ln in ci if ln.startswith("make") and "PYTHON=" in ln]  # the Makefile's own venv (VENV)


def test_the_virtualenv_make_makes_does_not_see_the_systems_packages(tmp_path: Path) -> None:
    """A pytest plugin in the system Python (hypothesis) is not on the virtualenv's path."""
    venv = tmp_path / "venv"
    # the command `make venv` makes it with, run as make would (without pip: ensurepip takes seconds)
    make = [line for line in make_n("venv", f"VENV={venv}") if "-m venv" in line]
    assert len(make) == 1 and f'python3 -m venv "{venv}"' in make[0], make
    subprocess.run(["bash", "-c", make[0].replace("-m venv", "-m venv --without-pip")], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VENV", "MAKEFLAGS", "MAKELEVEL")}
    res = subprocess.run(["make", "--no-print-directory", "venv", f"VENV={venv}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr  # made already: accepted as a virtualenv of its own
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()

    def paths(python: str, code: str) -> set[str]:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout
        return {p for p in out.splitlines() if p.endswith(("site-packages", "dist-packages"))}

    system = paths("python3", "import site; print('\\n'.join(site.getsitepackages()))")
    inside = paths(str(venv / "bin" / "python"), "import sys; print('\\n'.join(sys.path))")
    assert system and inside and not system & inside, (system, inside)

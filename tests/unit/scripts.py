"""The shell code the program sends to a server, cut out of its declared commands
so unit tests can read it, or run a piece of it with stand-ins for the system."""

from __future__ import annotations

import re
import subprocess

from tests.program import ProgramRun
from tests.static.rendered import script_of


def create(run: ProgramRun, name: str) -> str:
    """The script a command runs on create (and update)."""
    return script_of(run.named(name).inputs["create"])


def delete(run: ProgramRun, name: str) -> str:
    return script_of(run.named(name).inputs["delete"])


def bash(script: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script, "test", *args], capture_output=True, text=True, timeout=timeout)


def function(script: str, name: str) -> str:
    """A shell function's definition."""
    m = re.search(rf"^{name}\(\) \{{.*?^\}}\n", script, re.S | re.M)
    assert m, f"no function {name}() in the script"
    return m.group(0)


def assignment(script: str, var: str) -> str:
    """The line that sets VAR (``VAR=...``)."""
    m = re.search(rf"^{var}=.*$", script, re.M)
    assert m, f"no {var}= in the script"
    return m.group(0)


def section(script: str, heading: str) -> str:
    """The body of a ``# --- heading ---`` section, up to the next one."""
    m = re.search(rf"^# --- {re.escape(heading)}.*?\n(.*?)(?=^# --- )", script, re.S | re.M)
    assert m, f"no section '{heading}' in the script"
    return m.group(1)

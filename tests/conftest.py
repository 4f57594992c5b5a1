"""Shared test setup: a throwaway HOME with an SSH key, so the example stacks'
``ssh_private_key_file: ~/.ssh/id_ed25519`` resolves without touching yours."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

# The user's own HOME, before the override: caches kept there (the Go-built Pulumi CLI of
# toolchain/build.sh, Go's module and build caches) must not be rebuilt in the throwaway one.
REAL_HOME = os.environ.get("HOME", str(Path.home()))
_HOME = Path(tempfile.mkdtemp(prefix="plumber-hosting-home-"))
(_HOME / ".ssh").mkdir(mode=0o700)
subprocess.run(
    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(_HOME / ".ssh" / "id_ed25519")],
    check=True,
)
os.environ["HOME"] = str(_HOME)
# The program refuses a stale SSH agent socket (components/keys.py agent_problem); the tests use their own key
# and no agent, whatever the developer's shell holds (the agent tests set the variable themselves).
os.environ.pop("SSH_AUTH_SOCK", None)
TEST_KEY = _HOME / ".ssh" / "id_ed25519"


@pytest.fixture(scope="session")
def test_key() -> Path:
    return TEST_KEY


def local_overrides() -> dict[str, str]:
    """The local stack points at .lab/id_ed25519, which exists only while a lab runs."""
    return {"ssh_private_key_file": str(TEST_KEY)}

"""Reusable pytest fixtures for end-to-end tests against the lab.

Import them into a test module (tests/conftest.py is owned elsewhere)::

    from tests.lab.fixtures import lab_fixture, lab_host_fixture  # noqa: F401

and request ``lab`` (session: a Lab with hosts up) and/or ``lab_host`` (a fresh
testinfra Host for the first lab host, per test).

Environment:
  LAB_HOSTS=N   number of hosts the session lab brings up (default 1)
  LAB_KEEP=1    leave the lab running after the session (inspect it with
                ``python -m tests.lab status``; stop it with ``... down``)
  LAB_REUSE=1   reuse an already running lab with at least N hosts instead of
                recreating it (faster iterations; hosts are then not fresh)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
import testinfra.backend
import testinfra.host

from tests.lab.lab import Lab

REQUIRED_TOOLS = (
    "systemd-nspawn",
    "debootstrap",
    "apt-cacher-ng",
    "pebble",
    "pebble-challtestsrv",
    "ip",
    "ssh",
    "ssh-keygen",
    "openssl",
)


def lab_unavailable_reason() -> str | None:
    """Why the lab cannot run on this machine, or None if it can."""
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (see tests/lab/apt-packages.txt)"
    return None


def testinfra_host(lab: Lab, name: str | None = None) -> testinfra.host.Host:
    """A new (uncached) testinfra Host over SSH (paramiko) to a lab host.

    Uncached on purpose: a connection does not survive a reboot of the guest.
    """
    state = lab.state
    if state is None:
        raise RuntimeError("the lab is not up")
    h = state.host(name) if name else state.hosts[0]
    backend = testinfra.backend.get_backend(
        f"paramiko://{h.user}@{h.address}:{h.ssh_port}",
        ssh_identity_file=h.key_path,
        ssh_config=state.ssh_config_path,
        timeout=30,
    )
    return testinfra.host.Host(backend)


@pytest.fixture(scope="session", name="lab")
def lab_fixture() -> Iterator[Lab]:
    """A Lab with LAB_HOSTS (default 1) fresh hosts, torn down after the session."""
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab()
    n_hosts = int(os.environ.get("LAB_HOSTS", "1"))
    state = lab.state
    reuse = os.environ.get("LAB_REUSE") == "1" and state is not None and len(state.hosts) >= n_hosts and lab.is_up()
    if not reuse:
        lab.up(n_hosts)
    try:
        yield lab
    finally:
        if os.environ.get("LAB_KEEP") != "1":
            lab.down()


@pytest.fixture(name="lab_host")
def lab_host_fixture(lab: Lab) -> testinfra.host.Host:
    """testinfra Host for the first lab host (new connection per test)."""
    return testinfra_host(lab)

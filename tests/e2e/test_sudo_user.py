"""Existing-host mode with a non-root `host.user`: every command runs through
`sudo -n` (README, `host`), on a lab host with such a user.

A user with passwordless sudo gets the same result as root: the app serves,
its files are root's, its workers run as `plumber`. A user without it gets a
clear failure at once (`sudo -n` never waits for a password), and nothing is
half-done on the host.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.e2e.conftest import Deployer, curl
from tests.engine import CommandFailedError

USER = "deploy"


@pytest.fixture(scope="module")
def sudo_user(deployer: Deployer, host: Any) -> Any:
    """A `deploy` user with the lab's SSH key and passwordless sudo; removed afterwards."""
    host.check_output(
        f"id -u {USER} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {USER}; "
        f"install -d -m 0700 -o {USER} -g {USER} /home/{USER}/.ssh; "
        f"install -m 0600 -o {USER} -g {USER} /root/.ssh/authorized_keys /home/{USER}/.ssh/authorized_keys; "
        f"echo '{USER} ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/{USER}; chmod 0440 /etc/sudoers.d/{USER}; "
        f"visudo -cq"
    )
    yield USER
    host.run(f"echo '{USER} ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/{USER}; chmod 0440 /etc/sudoers.d/{USER}")
    deployer.destroy()  # as the deploy user, through sudo: the state names that user
    host.run(f"rm -f /etc/sudoers.d/{USER}; userdel --remove {USER}")


def _config(deployer: Deployer) -> dict[str, Any]:
    cfg = deployer.base()
    cfg["host"]["user"] = USER
    cfg["apps"] = [a for a in cfg["apps"] if a["name"] == "hello"]
    return cfg


def test_non_root_user_deploys_through_sudo(deployer: Deployer, host: Any, sudo_user: str, address: str) -> None:
    cfg = _config(deployer)
    result = deployer.up(cfg)
    assert "create hello-deploy" in result.ran, result.ran
    assert deployer.last is not None
    assert all(c.inputs["create"].startswith("sudo -n bash -c") for c in deployer.last.commands)
    assert curl("-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{address}/hello/health").stdout == "200"
    # what the deploy wrote is root's, not the SSH user's; the workers run unprivileged
    assert host.check_output("stat -c '%U:%G %a' /etc/plumber-hosting/env/hello.env") == "root:root 600"
    assert host.check_output("stat -c '%U' /srv/plumber/hello/current/plumber.R") == "root"
    users = host.check_output("ps -o user= -C R | sort -u")
    assert users == "plumber", users


def test_without_passwordless_sudo_it_fails_at_once(deployer: Deployer, host: Any, sudo_user: str) -> None:
    cfg = copy.deepcopy(_config(deployer))
    cfg["apps"][0]["workers"] = 3  # a change, so the deploy runs again
    before = host.check_output("readlink /srv/plumber/hello/current")
    host.check_output(f"rm -f /etc/sudoers.d/{USER}")
    try:
        with pytest.raises(CommandFailedError) as err:
            deployer.up(cfg)
    finally:
        host.check_output(f"echo '{USER} ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/{USER}; chmod 0440 /etc/sudoers.d/{USER}")
    assert "a password is required" in str(err.value), str(err.value)[-1000:]
    assert host.check_output("readlink /srv/plumber/hello/current") == before
    assert host.check_output("systemctl list-units --plain --no-legend --state=active 'plumber-hello@*' | wc -l") == "2"

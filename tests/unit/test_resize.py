"""Issue 23, point 9: a resize behind the load balancer drains the droplet first.

The provider resizes a droplet by a hard power-off, the resize, and a power-on
(digitalocean/droplet/resource_droplet.go, resourceDigitalOceanDropletUpdate).
Under Pulumi's mocks, with the account's droplets carried across runs
(MockCloud): the droplet's update depends on a leave command that runs the
rotation's leave script when the size changes, over the droplet's address as it
is; the rotation's join runs again after (it names the size); droplet i's change
still waits for replica i-1 to serve again.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.loadbalancer import DRAIN_SECONDS
from components.rotation import rotation_token
from tests.program import MockCloud, ProgramRun, run_program, stack_config
from tests.static.rendered import script_of

SECRETS = ("ssh_private_key", "alerts")
SMALL, LARGE = "s-1vcpu-2gb", "s-2vcpu-4gb"


def run(cloud: MockCloud, n: int = 2, size: str = SMALL, **overrides: Any) -> ProgramRun:
    cfg = copy.deepcopy(stack_config("scale"))
    cfg.update(replicas=n, size=size, **overrides)
    return run_program(cfg, stack="scale", cloud=cloud, secret_keys=SECRETS)


def urn(r: ProgramRun, name: str) -> str:
    return r.named(name).urn


def names(r: ProgramRun) -> set[str]:
    return {x.name for x in r.resources}


def leave(i: int) -> str:
    return "rotation-resize-leave" if i == 1 else f"rotation@{i}-resize-leave"


def droplet(i: int) -> str:
    return "server-droplet" if i == 1 else f"server@{i}-droplet"


def rotation(i: int) -> str:
    return "rotation-join" if i == 1 else f"rotation@{i}-join"


def test_a_resize_leaves_the_rotation_before_the_power_off() -> None:
    cloud = MockCloud()
    run(cloud)
    ids = {i: cloud.droplets[f"scale::{droplet(i)}"][0] for i in (1, 2)}
    r = run(cloud, size=LARGE)
    assert cloud.replaced == []  # in place: a power cycle, the same droplet
    for i, address in ((1, "203.0.113.10"), (2, "203.0.113.11")):
        d = r.named(droplet(i))
        assert d.inputs["size"] == LARGE
        assert leave(i) in names(r) and urn(r, leave(i)) in d.dependencies, (
            f"{droplet(i)} is resized (powered off) while still in the load balancer's rotation: "
            f"its update depends on {[u.rsplit('::', 1)[1] for u in d.dependencies]}"
        )
        c = r.named(leave(i)).inputs
        # the droplet's address as it is, and that droplet only
        assert c["connection"]["host"] == address
        assert c["create"] == c["update"]
        assert c["create"].startswith(f"# plumber-hosting: on droplet {ids[i]}, leaving the rotation to resize "
                                      f"{SMALL} -> {LARGE}\nPLUMBER_HOSTING_DROPLET={ids[i]} bash -c ")
        # the rotation's own leave script: its token, then the load balancer's drain
        token = rotation_token("rotation" if i == 1 else f"rotation@{i}")
        assert token in c["create"] and token in r.named(rotation(i)).inputs["create"]
        assert "rm -f /etc/plumber-hosting/in-service" in c["create"]
        assert f"waiting {DRAIN_SECONDS}s for the load balancer to notice" in c["create"]
        # ... and it rejoins after the resize: the join names the new size and waits for the droplet
        join = r.named(rotation(i))
        assert f", size {LARGE}\n" in join.inputs["create"].split("bash -c", 1)[0]
        assert urn(r, droplet(i)) in {*join.dependencies, *(urn(r, n) for n in r.upstream(rotation(i)))}


def test_droplet_i_is_drained_only_once_replica_i_minus_1_serves_again() -> None:
    cloud = MockCloud()
    run(cloud, n=3)
    r = run(cloud, n=3, size=LARGE)
    for i in (2, 3):
        assert urn(r, rotation(i - 1)) in r.named(leave(i)).dependencies
        assert urn(r, rotation(i - 1)) in r.named(droplet(i)).dependencies


def test_no_resize_runs_nothing() -> None:
    """The leave command has no script when the size does not change: pulumi-command runs nothing."""
    cloud = MockCloud()
    first = run(cloud)
    assert leave(1) not in names(first)  # a new stack: nothing to drain
    again = run(cloud)
    for i in (1, 2):
        c = again.named(leave(i)).inputs
        assert c.get("create") is None and c.get("update") is None, c
    resized = run(cloud, size=LARGE)
    after = run(cloud, size=LARGE)  # the next run: the droplet has its size, nothing drains it again
    assert resized.named(leave(1)).inputs.get("update")
    assert after.named(leave(1)).inputs.get("update") is None


def test_the_leave_command_is_strict_shell(tmp_path: Path) -> None:
    """The whole command text (what the login shell runs) and its script pass bash -n and shellcheck."""
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed")
    cloud = MockCloud()
    run(cloud)
    text = run(cloud, size=LARGE).named(leave(2)).inputs["create"]
    for name, body in (("command", text), ("script", script_of(text))):
        path = tmp_path / f"{name}.sh"
        path.write_text("#!/bin/bash\n" + body)
        assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0, name
        res = subprocess.run([shellcheck, "-s", "bash", "-S", "style", str(path)], capture_output=True, text=True)
        assert res.returncode == 0, f"{name}:\n{res.stdout}"
    assert "\nset -euo pipefail\n" in script_of(text)


def test_one_server_has_no_rotation_leave() -> None:
    """Without a load balancer there is nothing to drain (the reserved IP's one server)."""
    cloud = MockCloud()
    run(cloud, n=1)
    r = run(cloud, n=1, size=LARGE)
    assert not any(x.name.endswith("resize-leave") for x in r.resources)



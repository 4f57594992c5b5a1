"""A droplet replacement: the stack gets a new, empty server and brings everything back.

Droplet mode, with the droplet's address a lab host's. When a replace-forcing
input of the droplet changes (its image: ForceNew in the DigitalOcean
provider), the test engine replaces it as the real engine does
(create-before-delete; the old droplet is deleted at the end and runs no
command) and the lab resets the host to a fresh tree at the same address: a
new droplet. The program must then carry every command out again on it.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests import program
from tests.e2e.conftest import Deployer, get_json, status
from tests.engine import COMMAND, DROPLET
from tests.lab.fixtures import testinfra_host as fresh_host
from tests.lab.lab import Lab
from tests.program import run_program

pytestmark = pytest.mark.skipif(
    "cloud" not in inspect.signature(run_program).parameters,
    reason="needs tests/program.py's MockCloud (issue 12): droplet ids that follow a replacement",
)


@pytest.fixture(scope="module", autouse=True)
def droplet_address_from_the_engine() -> Iterator[None]:
    """tests/program.py's mocks give a droplet a documentation address (203.0.113.x) after applying
    the engine's outputs; here the engine's (a lab host's address) win, as a real droplet's would."""
    original = program._Mocks.new_resource

    def new_resource(self: Any, args: Any) -> tuple[str | None, dict[str, Any]]:
        pending = dict(getattr(self.pending, "outputs", None) or {})
        rid, state = original(self, args)
        if args.typ == DROPLET:
            state.update(pending)
        return rid, state

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(program._Mocks, "new_resource", new_resource)
        yield


@pytest.fixture(scope="module")
def droplet_stack(deployer: Deployer, lab: Lab) -> dict[str, Any]:
    h = lab.state.hosts[0]  # type: ignore[union-attr]
    lab.reset_host(h.name)  # a new droplet is a fresh machine

    def outputs(*_: Any) -> Mapping[str, Any]:
        return {"ipv4_address": h.address, "ipv6_address": ""}

    def new_droplet(old: Mapping[str, Any], new_inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        lab.reset_host(h.name)
        return outputs()

    deployer.engine_options = {"droplet_outputs": outputs, "fresh_host": new_droplet}
    cfg = deployer.base()
    cfg.pop("host")
    cfg.update(region="nyc3", size="s-1vcpu-2gb", image="debian-12-x64", droplet_name="plumber-lab",
               ssh_public_key=Path(h.key_path + ".pub").read_text().strip(), reserved_ip=False, monitoring=False,
               protect=False, swap_gb=0)
    cfg["apps"] = [{"name": "hello", "source": "examples/hello", "workers": 2, "health_path": "/health"},
                   {"name": "hashing", "source": "examples/hashing", "path": "/hash", "packages": ["digest"],
                    "health_path": "/health"}]
    return cfg


def serves(address: str) -> bool:
    return (status(f"http://{address}/hello/health") == 200
            and get_json(f"http://{address}/hash/sha256?text=abc")["sha256"].startswith("ba7816bf"))


def test_droplet_stack_serves(deployer: Deployer, droplet_stack: dict[str, Any], address: str) -> None:
    result = deployer.up(droplet_stack)
    assert "server-droplet" in result.ops("create")
    assert serves(address)


def test_replaced_droplet_gets_everything_back(deployer: Deployer, droplet_stack: dict[str, Any], address: str,
                                               lab: Lab) -> None:
    old = fresh_host(lab)
    old.run_expect([0], "touch /root/old-droplet-marker")
    cfg = copy.deepcopy(droplet_stack)
    cfg["image"] = "debian-12-x64-v2"  # ForceNew: a new droplet
    plan = deployer.preview(cfg)
    commands = {r.name for r in plan.program.resources if r.type == COMMAND}
    assert plan.ops["server-droplet"] == "replace"
    assert {n: op for n, op in plan.changes().items()} == {n: "update" for n in commands}  # every command again
    started = time.monotonic()
    result = deployer.up(cfg)
    seconds = time.monotonic() - started
    # the droplet, and each upload: the droplet's id is in its triggers (a new server gets its own copy)
    replaced = ["server-droplet", *sorted(f"{a}-upload" for a in ("hello", "hashing"))]
    assert sorted(result.ops("replace-create")) == sorted(replaced), result.ops("replace-create")
    assert sorted(result.ops("replace-delete")) == sorted(replaced), result.ops("replace-delete")
    assert set(result.ops("update")) >= commands  # every command carried out again on the new host
    assert not [s for s in result.steps if s.type == COMMAND and "delete" in s.op]  # no delete script ran
    assert serves(address)
    new = fresh_host(lab)
    assert not new.file("/root/old-droplet-marker").exists  # a new machine
    for app in ("hello", "hashing"):  # one release each: nothing of the old left behind
        assert len(new.check_output(f"ls /srv/plumber/{app}/releases").split()) == 1
    droplets = [r for r in deployer.engine().load() if r["type"] == DROPLET]
    assert len(droplets) == 1
    assert deployer.preview(cfg).changes(None) == {}
    print(f"droplet replacement: {len(commands)} commands carried out again on the new host, "
          f"serving again after {seconds:.1f}s")
    droplet_stack.clear()
    droplet_stack.update(cfg)

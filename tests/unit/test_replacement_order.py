"""Issue 23, point 5: a replaced droplet gets the reserved IP only once it serves.

Reserved-IP mode (replicas: 1), under Pulumi's mocks: the commands reach the
droplet at its own address, never through the reserved IP, so a new droplet is
built while the IP still points at the old one; the ReservedIpAssignment waits
for the droplet to be provisioned, its apps deployed and its health checked (the
rotation); a failed command stops the run before it, so the IP stays on the old,
working droplet. Each script refuses to run on a droplet other than the one its
text names: its preamble compares the id with the droplet's metadata service.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.remote_script import on_droplet
from components.render import _env, remote_script, render
from tests.conftest import local_overrides
from tests.program import MockCloud, ProgramRun, run_program, stack_config

DO = "digitalocean:index/"
CMD = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
RESERVED_IP = "198.51.100.7"  # the mocks' reserved IP
DROPLET_IP = "203.0.113.10"  # the mocks' first droplet's own address
SECRETS = ("ssh_private_key", "alerts")


def config(stack: str, **overrides: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(stack_config(stack))
    if stack == "scale":
        cfg["replicas"] = 1  # the scale stack's settings (https, a domain) on one server
    cfg.update(overrides)
    return cfg


def run(stack: str, cloud: MockCloud | None = None, **overrides: Any) -> ProgramRun:
    return run_program(config(stack, **overrides), stack=stack, cloud=cloud, secret_keys=SECRETS)


# --------------------------------------------------------------- the order


@pytest.mark.parametrize("stack", ["dev", "scale"])
def test_commands_reach_the_droplet_at_its_own_address_not_the_reserved_ip(stack: str) -> None:
    r = run(stack)
    assert r.named("server-droplet").inputs and r.of_type(f"{DO}reservedIp:ReservedIp")
    remote = [*r.commands, *r.of_type(COPY)]
    assert remote
    for c in remote:
        assert c.inputs["connection"]["host"] == DROPLET_IP, (
            f"{c.name} connects to {c.inputs['connection']['host']}: through the reserved IP, a new droplet "
            "would be built only after the IP moved to it (an outage for the whole build)"
        )
    # the public address stays the reserved IP: DNS, the URLs, the outputs
    assert r.outputs["ip"] == RESERVED_IP
    if stack == "scale":
        assert r.named("dns-a").inputs["value"] == RESERVED_IP


@pytest.mark.parametrize("stack", ["dev", "scale"])
def test_reserved_ip_moves_only_once_the_droplet_serves(stack: str) -> None:
    r = run(stack)
    before = r.upstream("server-ip-assignment")
    serving = {"server-droplet", "server-firewall", "provision-server", "site-nginx", "rotation-join",
               *(f"{a['name']}-deploy" for a in config(stack)["apps"])}
    missing = serving - before
    assert not missing, f"the reserved IP moves to the droplet before {sorted(missing)}"
    # ... and nothing that builds the server waits for it
    for c in [*r.commands, *r.of_type(COPY)]:
        if c.name != "site-certificate":
            assert "server-ip-assignment" not in r.upstream(c.name), c.name


def test_a_replaced_droplet_is_built_before_the_ip_moves() -> None:
    """The replacement itself: every command names the new droplet, and connects to its address."""
    cloud = MockCloud()
    run("dev", cloud)
    old_id = cloud.droplets["dev::server-droplet"][0]
    r = run("dev", cloud, image="debian-12-x64", protect=False)
    new_id = cloud.droplets["dev::server-droplet"][0]
    assert cloud.replaced == ["dev::server-droplet"] and new_id != old_id
    for c in r.commands:
        assert c.inputs["create"].startswith(f"# plumber-hosting: on droplet {new_id}"), c.name
        assert f"\nPLUMBER_HOSTING_DROPLET={new_id} bash -c " in c.inputs["create"], c.name
        assert c.inputs["connection"]["host"] == DROPLET_IP
    assert r.named("server-ip-assignment").inputs["dropletId"] == int(new_id)
    assert "rotation-join" in r.upstream("server-ip-assignment")


def test_https_gets_its_certificate_once_the_ip_points_at_the_server() -> None:
    """HTTP-01 reaches the droplet only through the reserved IP (DNS names it): a droplet without a
    certificate yet serves plain HTTP, and certbot runs again once the IP has moved."""
    r = run("scale")
    site = r.named("site-nginx").inputs["create"]
    assert "plain HTTP until the reserved IP points here" in site and "certbot certonly" in site
    cert = r.named("site-certificate")
    assert "server-ip-assignment" in r.upstream("site-certificate")
    assert "certbot certonly" in cert.inputs["create"] and "until the reserved IP points here" not in cert.inputs[
        "create"]
    assert cert.inputs["create"].startswith("# plumber-hosting: on droplet ")
    assert "delete" not in cert.inputs  # removing the site is the site's own delete


def test_no_reserved_ip_no_assignment_and_plain_site() -> None:
    r = run("dev", reserved_ip=False)
    assert not r.of_type(f"{DO}reservedIpAssignment:ReservedIpAssignment")
    assert r.outputs["ip"] == DROPLET_IP
    assert all(c.inputs["connection"]["host"] == DROPLET_IP for c in r.commands)


def test_every_droplet_command_carries_its_droplet_id_and_existing_hosts_none() -> None:
    cloud = MockCloud()
    r = run("dev", cloud)
    did = cloud.droplets["dev::server-droplet"][0]
    for c in r.commands:
        lines = c.inputs["create"].split("\n", 2)
        assert lines[0].startswith(f"# plumber-hosting: on droplet {did}")
        assert lines[1].startswith(f"PLUMBER_HOSTING_DROPLET={did} bash -c "), c.name
    local = run_program({**stack_config("local"), **local_overrides()}, stack="local")
    for c in local.commands:
        assert "PLUMBER_HOSTING_DROPLET" not in c.inputs["create"].split("\n", 1)[0], c.name
        assert not c.inputs["create"].startswith("# plumber-hosting: on droplet")


# --------------------------------------------------------------- the preamble's check


STUB = "curl() {{ {body}; }}; export -f curl"


def bash(text: str, curl_body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Runs a command's text as the server's login shell would, with `curl` answering as `curl_body`
    (an exported function: the preamble sets its own PATH, functions still win)."""
    script = tmp_path / "command.sh"
    script.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "PLUMBER_HOSTING_DROPLET"}
    return subprocess.run(
        ["bash", "-c", f"{STUB.format(body=curl_body)}; exec bash {script}"],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=30,
    )


def small_script() -> str:
    """The real preamble, then a line that shows the script went on."""
    template = _env.from_string('{% import "scripts/lib.sh.j2" as lib %}\n{{ lib.preamble(lock=False) }}\n'
                                'echo "went on"\n')
    return remote_script(template.render())


def test_preamble_refuses_to_run_on_another_droplet(tmp_path: Path) -> None:
    text = on_droplet(small_script(), "droplet 4242", "4242")
    refused = bash(text, 'echo -n 4343', tmp_path)
    assert refused.returncode != 0
    assert "went on" not in refused.stdout
    assert "refusing to run: this script is for droplet 4242, but this server is droplet 4343" in refused.stderr


def test_preamble_goes_on_on_its_own_droplet(tmp_path: Path) -> None:
    text = on_droplet(small_script(), "droplet 4242", "4242")
    ok = bash(text, 'echo -n 4242', tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "went on\n" and "refusing" not in ok.stderr


def test_preamble_asks_the_metadata_service_for_the_id(tmp_path: Path) -> None:
    text = on_droplet(small_script(), "droplet 4242", "4242")
    args = tmp_path / "curl-args"
    asked = bash(text, f'printf "%s\\n" "$@" >{args}; echo -n 4242', tmp_path)
    assert asked.returncode == 0
    assert "http://169.254.169.254/metadata/v1/id" in args.read_text().split("\n")


def test_preamble_without_a_metadata_service_goes_on_and_says_so(tmp_path: Path) -> None:
    """Not a DigitalOcean droplet at all (the project's lab stands in for one): nothing to compare."""
    text = on_droplet(small_script(), "droplet 4242", "4242")
    lab = bash(text, "return 7", tmp_path)
    assert lab.returncode == 0 and lab.stdout == "went on\n"
    assert "the metadata service did not answer" in lab.stderr


def test_existing_host_scripts_check_nothing(tmp_path: Path) -> None:
    """No droplet named in the text: the metadata service is not even asked."""
    asked = bash(small_script(), 'echo asked >&2; echo -n 1', tmp_path)
    assert asked.returncode == 0 and asked.stdout == "went on\n" and "asked" not in asked.stderr


def test_a_real_script_refuses_before_it_changes_anything(tmp_path: Path) -> None:
    """The join script (it writes /etc/plumber-hosting/in-service) stops in its preamble."""
    script = remote_script(render("scripts/join-rotation.sh.j2", token="t", timeout=1, settle_seconds=0))
    text = on_droplet(script, "droplet 4242, size s-1vcpu-1gb", "4242")
    refused = bash(text, "echo -n 99", tmp_path)
    assert refused.returncode == 1
    assert re.search(r"refusing to run: this script is for droplet 4242, but this server is droplet 99",
                     refused.stderr)
    assert "in-service" not in refused.stderr and "flock" not in refused.stderr


def test_the_aaaa_record_moves_only_once_the_droplet_serves() -> None:
    """The AAAA names the droplet's own IPv6 address: on a replacement it must move with the reserved IP, once
    the new droplet serves (a failed build leaves it on the old one), and the certificate comes after it
    (Let's Encrypt tries IPv6 first; the old droplet would answer the challenge with 404)."""
    r = run("prod")
    assert r.named("dns-aaaa").inputs.get("type") == "AAAA"
    assert "rotation-join" in r.upstream("dns-aaaa")
    assert {"dns-aaaa", "server-ip-assignment"} <= r.upstream("site-certificate")

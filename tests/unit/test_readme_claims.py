"""README claims that had no test, each at the cheapest tier that shows it.

Shell behaviour is checked by running the section of the rendered script the
server would run, with absolute paths moved into a temporary directory and the
system commands it calls replaced by stand-ins that record their arguments.
(403 -> 401 -> 429 and HSTS without https: tests/static/test_nginx_behaviour.py;
Posit's R script through shellcheck: the "posit-r-ubuntu" variant of
tests/static/test_rendered_files.py.)
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_KEY
from tests.program import ProgramRun, run_program, stack_config
from tests.static.rendered import landed, script_of
from tests.unit.scripts import assignment, bash, create, section


def _dev(**overrides: Any) -> ProgramRun:
    cfg = copy.deepcopy(stack_config("dev"))
    cfg.update(overrides)
    return run_program(cfg, stack="dev")


def _stubs(tmp: Path, *names: str) -> str:
    """Shell functions standing in for commands: each appends its name and arguments to $tmp/calls."""
    return "\n".join(f'{n}() {{ echo "{n} $*" >>{shlex.quote(str(tmp / "calls"))}; }}' for n in names) + "\n"


def _calls(tmp: Path) -> list[str]:
    f = tmp / "calls"
    return f.read_text().splitlines() if f.exists() else []


# ----------------------------------------------------------------- r_version: Posit's prebuilt R


@pytest.mark.parametrize(("image", "os_release", "platform"), [
    ("debian-12-x64", 'ID=debian\nVERSION_ID="12"\n', "debian-12"),
    ("ubuntu-24-04-x64", 'ID=ubuntu\nVERSION_ID="24.04"\n', "ubuntu-2404"),
], ids=["debian-12", "ubuntu-24.04"])
def test_posit_r_is_downloaded_for_the_server_s_release(tmp_path: Path, image: str, os_release: str,
                                                        platform: str) -> None:
    run = _dev(r_version="4.4.2", image=image)
    assert run.named("server-droplet").inputs["image"] == image
    script = create(run, "provision-server")
    posit = section(script, "R 4.4.2 from Posit's prebuilt packages")
    posit = posit[: posit.index("\nfi\n") + 4]  # the install, not the CRAN setup after it
    (tmp_path / "os-release").write_text(os_release)
    posit = posit.replace("/etc/os-release", str(tmp_path / "os-release"))
    res = bash("set -euo pipefail\nlog() { echo \"$*\" >&2; }\n"
                + _stubs(tmp_path, "curl", "apt-get") + "dpkg() { echo amd64; }\n" + posit)
    assert res.returncode == 0, res.stderr
    url = f"https://cdn.posit.co/r/{platform}/pkgs/r-4.4.2_1_amd64.deb"
    calls = _calls(tmp_path)
    assert any(c.startswith("curl ") and c.endswith(url) for c in calls), calls
    assert any(c.startswith("apt-get install") for c in calls), calls
    # that R is the one every worker runs, and the distro's R is not installed
    assert "/opt/R/4.4.2/bin/Rscript --no-save" in landed(run).files["/etc/systemd/system/plumber-hello@.service"]
    assert "r-base-core" not in assignment(script, "wanted")


def test_distro_r_by_default() -> None:
    script = create(_dev(), "provision-server")
    assert "r-base-core r-cran-plumber" in assignment(script, "wanted")
    assert "cdn.posit.co" not in script


# ----------------------------------------------------------------- swap


def _swap(tmp: Path, swap_gb: int, existing_size: int | None = None) -> subprocess.CompletedProcess[str]:
    script = create(_dev(swap_gb=swap_gb), "provision-server")
    swap = section(script, "swap").replace("/swapfile", str(tmp / "swapfile")).replace("/etc/fstab", str(tmp / "fstab"))
    if existing_size is not None:
        with (tmp / "swapfile").open("wb") as f:
            f.truncate(existing_size)
    (tmp / "fstab").touch()
    return bash("set -euo pipefail\nlog() { :; }\n" + _stubs(tmp, "fallocate", "mkswap", "swapoff", "chmod")
                 + f'swapon() {{ echo "swapon $*" >>{shlex.quote(str(tmp / "calls"))}; }}\n' + swap)


def test_swap_file_is_created_and_kept(tmp_path: Path) -> None:
    res = _swap(tmp_path, 2)
    assert res.returncode == 0, res.stderr
    calls = _calls(tmp_path)
    assert f"fallocate -l 2G {tmp_path}/swapfile" in calls and f"mkswap {tmp_path}/swapfile" in calls, calls
    assert f"swapon {tmp_path}/swapfile" in calls
    assert (tmp_path / "fstab").read_text() == f"{tmp_path}/swapfile none swap sw 0 0\n"
    # a second run with the file already the right size makes no new one, and no second fstab line
    (tmp_path / "calls").unlink()
    res = _swap(tmp_path, 2, existing_size=2 * 1024**3)
    assert res.returncode == 0, res.stderr
    assert not any(c.startswith(("fallocate", "mkswap")) for c in _calls(tmp_path)), _calls(tmp_path)
    assert (tmp_path / "fstab").read_text().count("swapfile") == 1


def test_swap_gb_zero_leaves_swap_alone(tmp_path: Path) -> None:
    res = _swap(tmp_path, 0)
    assert res.returncode == 0, res.stderr
    assert _calls(tmp_path) == [] and (tmp_path / "fstab").read_text() == ""


# ----------------------------------------------------------------- ssh_key_ids


def test_ssh_key_ids_are_the_droplet_s_keys() -> None:
    cfg = copy.deepcopy(stack_config("dev"))
    cfg.pop("ssh_public_key")
    cfg["ssh_key_ids"] = ["12345678", "3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"]
    run = run_program(cfg, stack="dev")
    assert not run.of_type("digitalocean:index/sshKey:SshKey")
    assert run.named("server-droplet").inputs["sshKeys"] == cfg["ssh_key_ids"]


def test_ssh_public_key_is_uploaded_and_used() -> None:
    run = _dev()
    key = run.named("server-key").inputs
    assert key["publicKey"] == stack_config("dev")["ssh_public_key"]
    keys = run.named("server-droplet").inputs["sshKeys"]
    assert len(keys) == 1 and re.fullmatch(r"([0-9a-f]{2}:){15}[0-9a-f]{2}", keys[0]), keys  # the uploaded key's


# ----------------------------------------------------------------- the release output


def test_release_output_is_the_release_the_server_runs(tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "hello"
    shutil.copytree("examples/hello", src)
    cfg = copy.deepcopy(stack_config("dev"))
    cfg["apps"][0]["source"] = str(src)
    before = run_program(cfg, stack="dev")
    release = before.outputs["apps"]["hello"]["release"]
    assert assignment(create(before, "hello-deploy"), "RELEASE") == f"RELEASE={release}"
    (src / "plumber.R").write_text((src / "plumber.R").read_text() + "\n# v2\n")
    after = run_program(cfg, stack="dev")
    assert after.outputs["apps"]["hello"]["release"] != release
    assert after.outputs["apps"]["hashing"]["release"] == before.outputs["apps"]["hashing"]["release"]


# ----------------------------------------------------------------- the per-server lock


def test_every_script_that_changes_the_server_takes_the_lock() -> None:
    run = run_program(copy.deepcopy(stack_config("scale")), stack="scale")
    for cmd in run.commands:
        for op in ("create", "delete"):
            if not cmd.inputs.get(op):
                continue
            script = script_of(cmd.inputs[op])
            if cmd.name.endswith("-probe"):  # reads only: never waits behind a deploy
                assert "exec 9>/run/lock/plumber-hosting.lock" not in script
                continue
            assert "exec 9>/run/lock/plumber-hosting.lock" in script, (cmd.name, op)


def test_the_lock_serialises_two_scripts(tmp_path: Path) -> None:
    script = create(_dev(), "hello-deploy")
    start = script.index("mkdir -p /run/lock")
    lock = script[start:script.index("\nfi\n", start) + 4].replace("/run/lock", str(tmp_path))
    body = ("set -euo pipefail\nlog() { echo \"$*\" >&2; }\n" + lock
            + f'echo "$1 start $(date +%s.%N)" >>{tmp_path}/order\nsleep 0.6\n'
            + f'echo "$1 end $(date +%s.%N)" >>{tmp_path}/order\n')
    first = subprocess.Popen(["bash", "-c", body, "x", "first"], stderr=subprocess.PIPE, text=True)
    time.sleep(0.2)
    second = subprocess.run(["bash", "-c", body, "x", "second"], capture_output=True, text=True, timeout=20)
    first.wait(timeout=20)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    events = [line.split()[:2] for line in (tmp_path / "order").read_text().splitlines()]
    assert events == [["first", "start"], ["first", "end"], ["second", "start"], ["second", "end"]]
    assert "waiting for another plumber-hosting script" in second.stderr


# ----------------------------------------------------------------- certificate renewal


def test_renewal_hook_reloads_nginx(tmp_path: Path) -> None:
    files = landed(run_program(copy.deepcopy(stack_config("prod")), stack="prod"))
    path = "/etc/letsencrypt/renewal-hooks/deploy/plumber-hosting-reload-nginx"
    assert files.modes[path] == "755"  # certbot runs only executable hooks
    hook = tmp_path / "hook"
    hook.write_text(files.files[path])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("nginx", "systemctl"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >>{tmp_path}/calls\n'
                                    + ('[ -z "$NGINX_BROKEN" ]\n' if name == "nginx" else ""))
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    res = subprocess.run(["sh", str(hook)], capture_output=True, text=True, env=env, timeout=10)
    assert res.returncode == 0, res.stderr
    assert _calls(tmp_path) == ["nginx -t -q", "systemctl reload nginx"]
    # a configuration nginx rejects is not reloaded, and certbot hears of it
    (tmp_path / "calls").unlink()
    res = subprocess.run(["sh", str(hook)], capture_output=True, text=True, env={**env, "NGINX_BROKEN": "1"}, timeout=10)
    assert res.returncode != 0 and _calls(tmp_path) == ["nginx -t -q"]


def test_no_https_no_certbot() -> None:
    site = create(_dev(), "site-nginx")
    assert "certbot certonly" not in site and "renewal-hooks" not in site


# ----------------------------------------------------------------- a failed release halts the roll


def _waits_for(run: ProgramRun, name: str) -> set[str]:
    """Every resource that cannot start before ``name`` has completed (its dependents, transitively)."""
    by_urn = {r.urn: r.name for r in run.resources}
    dependents: dict[str, set[str]] = {}
    for r in run.resources:
        for d in r.dependencies:
            dependents.setdefault(by_urn.get(d, d), set()).add(r.name)
    out: set[str] = set()
    todo = [name]
    while todo:
        for n in dependents.get(todo.pop(), set()) - out:
            out.add(n)
            todo.append(n)
    return out


@pytest.mark.parametrize("failing", [1, 2])
def test_a_failed_release_halts_the_roll_across_hosts(failing: int) -> None:
    """A resource starts only once what it depends on has completed, so a deploy that fails on
    host i (and is rolled back there by its script) keeps every later host on the old release,
    and leaves the earlier ones and the other apps alone."""
    cfg = copy.deepcopy(stack_config("local"))
    cfg.pop("host")
    cfg["hosts"] = [{"address": f"192.0.2.{i}", "user": "root", "port": 22} for i in (1, 2, 3)]
    cfg["ssh_private_key_file"] = str(TEST_KEY)
    run = run_program(cfg, stack="local")
    at = lambda app, i: app if i == 1 else f"{app}@{i}"  # noqa: E731 - replica naming
    blocked = _waits_for(run, f"{at('hello', failing)}-deploy")
    for later in range(failing + 1, 4):
        assert f"{at('hello', later)}-deploy" in blocked, later
    for earlier in range(1, failing):
        assert f"{at('hello', earlier)}-deploy" not in blocked, earlier
    # another app's roll and the hosts themselves go on
    assert not {f"{at('hashing', i)}-deploy" for i in (1, 2, 3)} & blocked
    assert not {f"{at('provision', i)}-server" for i in (1, 2, 3)} & blocked

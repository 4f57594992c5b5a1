"""Faults during `pulumi up`, under a steady load from outside the host.

Each fault interrupts an up the way it happens for real: the up's process
group is killed (a cancelled CI job kills the CLI and its provider, whose SSH
connections drop), the SSH connection of a running command is cut on the host,
or the host reboots in the middle of a deploy. After each: the app keeps
serving, nothing is lost (env file, kept releases), and the next up converges
with no manual step (the engine's pending operations, tests/ENGINE.md).
Every figure (failed requests, convergence seconds) is printed for the summary.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Deployer, get_json, status
from tests.e2e.load import SteadyLoad
from tests.engine import COMMAND, COPY, Engine
from tests.lab.fixtures import testinfra_host as fresh_host
from tests.lab.lab import Lab

ROOT = Path(__file__).resolve().parents[2]
APP = "victim"
FAULTS: list[str] = []


def version(src: Path, label: str) -> None:
    """Make the app report `label` from GET /version."""
    text = (src / "plumber.R").read_text().split("\n#* Release label", 1)[0]
    text += f'\n#* Release label\n#* @get /version\n#* @serializer unboxedJSON\nfunction() list(version = "{label}")\n'
    (src / "plumber.R").write_text(text)


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fault-apps")
    for name in (APP, "gone"):
        shutil.copytree(ROOT / "examples" / "hello", d / name)
    version(d / APP, "v1")
    return d


@pytest.fixture
def host(lab: Lab) -> Any:
    """A new connection per test: the reboot test cuts the old ones."""
    return fresh_host(lab)


@pytest.fixture(scope="module")
def config(deployer: Deployer, app_dir: Path) -> dict[str, Any]:
    cfg = deployer.base()
    cfg["apps"] = [{"name": APP, "source": str(app_dir / APP), "workers": 2, "health_path": "/health"}]
    cfg.pop("forward_root", None)
    deployer.up(cfg)
    return cfg


def ver(address: str) -> str:
    return str(get_json(f"http://{address}/{APP}/version")["version"])


def kept(host: Any) -> tuple[list[str], bool]:
    """The app's kept releases and whether its env file is there."""
    releases = host.check_output(f"ls /srv/plumber/{APP}/releases").split()
    return sorted(releases), host.file(f"/etc/plumber-hosting/env/{APP}.env").exists


def wait_pending(state: Path, name: str, until: float, alive: Callable[[], bool], why: Callable[[], str] = str) -> None:
    """Until the engine has a pending operation on resource `name` (its step is running)."""
    while time.monotonic() < until:
        assert alive(), f"the up ended before the fault: {why()}"
        try:
            pending = json.loads(state.read_text()).get("pending_operations", [])
        except (OSError, ValueError):
            pending = []
        if any(p["urn"].endswith(f"::{name}") for p in pending):
            return
        time.sleep(0.05)
    raise AssertionError(f"no step of {name} started")


def start_up(deployer: Deployer, cfg: dict[str, Any], work: Path) -> subprocess.Popen[str]:
    """`pulumi up` (the test engine's CLI) in its own process group, so a fault can kill it whole."""
    cfg_file = work / "config.json"
    cfg_file.write_text(json.dumps(cfg))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine", "up", str(deployer.state), str(cfg_file), "local"],
        cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def killed_up(deployer: Deployer, cfg: dict[str, Any], name: str, delay: float, work: Path) -> str:
    """`pulumi up` in its own process group, killed `delay` s after `name`'s step started."""
    proc = start_up(deployer, cfg, work)
    try:
        wait_pending(deployer.state, name, time.monotonic() + 240, lambda: proc.poll() is None)
        time.sleep(delay)
        assert proc.poll() is None, "the up ended before the fault"
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its provider (the Go runner) at once
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    pending = Engine(deployer.state).pending_operations()
    return ", ".join(f"{p['type']} {p['urn'].split('::')[-1]}" for p in pending) or "none"


def converge(deployer: Deployer, cfg: dict[str, Any]) -> tuple[float, list[str]]:
    started = time.monotonic()
    result = deployer.up(cfg)
    seconds = time.monotonic() - started
    assert deployer.preview(cfg).changes(None) == {}  # converged: nothing left to do
    return seconds, result.warnings


def report(fault: str, load: SteadyLoad, seconds: float, detail: str) -> None:
    line = (f"FAULT {fault}: {load.result.failed} of {load.result.total} requests failed "
            f"{dict(load.result.statuses)}; next up converged in {seconds:.1f}s; {detail}")
    FAULTS.append(line)
    print(line)


def killed_up_after(deployer: Deployer, cfg: dict[str, Any], name: str, lab: Lab, host_name: str, wait_on_host: str,
                    work: Path) -> tuple[str, str]:
    """`pulumi up` killed once `name`'s step runs and `wait_on_host` (a shell loop) returned on the host."""
    proc = start_up(deployer, cfg, work)
    try:
        wait_pending(deployer.state, name, time.monotonic() + 240, lambda: proc.poll() is None,
                     lambda: (proc.stdout.read() if proc.stdout else "")[-3000:])
        lab.ssh(host_name, f"timeout 120 bash -c {shlex.quote(wait_on_host)}", timeout=130, check=True)
        assert proc.poll() is None, "the up ended before the fault"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    time.sleep(2)
    remote = lab.ssh(host_name, "pgrep -fa '[P]H_SCRIPT_' | cut -c1-60 || true").stdout.decode().strip()
    pending = Engine(deployer.state).pending_operations()
    return ", ".join(f"{p['type']} {p['urn'].split('::')[-1]}" for p in pending) or "none", remote or "none"


@pytest.mark.parametrize("moment", ["after-switch"])
def test_kill_the_up_mid_rolling_release(deployer: Deployer, config: dict[str, Any], app_dir: Path, address: str,
                                         host: Any, lab: Lab, host_name: str, tmp_path: Path, moment: str) -> None:
    """Killed before or right after the deploy switched `current` to the new release."""
    before = kept(host)
    old, new = ver(address), f"v2-{moment}"
    version(app_dir / APP, new)
    current = f"/srv/plumber/{APP}/current"
    # before the switch: the up is killed while the deploy unpacks (current still the old release);
    # after it: killed as soon as `current` points at the new release, workers not yet restarted
    wait = (f"while [ \"$(readlink {current})\" = \"{host.check_output(f'readlink {current}')}\" ]; do sleep 0.02; done"
            if moment == "after-switch" else "sleep 0.2")
    with SteadyLoad(address, f"/{APP}/version", rate=20, max_seconds=240) as load:
        pending, remote = killed_up_after(deployer, config, f"{APP}-deploy", lab, host_name, wait, tmp_path)
        assert status(f"http://{address}/{APP}/health") == 200  # still serving
        serving = ver(address)
        assert serving in {old, new}
        releases, env = kept(host)
        assert env and set(before[0]) <= set(releases)  # nothing lost
        seconds, warnings = converge(deployer, config)
        time.sleep(1)
    after = ver(address)
    report(f"kill mid rolling release ({moment})", load, seconds,
           f"pending after the kill: {pending}; deploy script still running on the host: {remote}; "
           f"served {serving} after the kill, {after} after the next up")
    assert warnings and "pending operations" in warnings[0], warnings
    assert load.result.failed == 0, dict(load.result.statuses)
    assert after == new, (f"the next up reported success but {APP} serves {after}; current -> "
                          f"{host.check_output(f'readlink {current}')}")


def test_kill_the_up_mid_provisioning(deployer: Deployer, config: dict[str, Any], address: str, host: Any,
                                      tmp_path: Path) -> None:
    cfg = copy.deepcopy(config)
    cfg["admin_cidrs"] = [*cfg["admin_cidrs"], "192.0.2.0/24"]  # provision-server re-runs
    before = kept(host)
    with SteadyLoad(address, f"/{APP}/version", rate=20, max_seconds=300) as load:
        pending = killed_up(deployer, cfg, "provision-server", 1.5, tmp_path)
        assert status(f"http://{address}/{APP}/health") == 200
        assert kept(host) == before
        seconds, _ = converge(deployer, cfg)
    assert "192.0.2.0/24" in host.check_output("ufw status")
    report("kill mid provisioning", load, seconds, f"pending after the kill: {pending}")
    assert load.result.failed == 0, dict(load.result.statuses)
    config.clear()
    config.update(cfg)


def test_kill_the_up_mid_removal(deployer: Deployer, config: dict[str, Any], app_dir: Path, address: str, host: Any,
                                 lab: Lab, host_name: str, tmp_path: Path) -> None:
    with_gone = copy.deepcopy(config)
    with_gone["apps"].append({"name": "gone", "source": str(app_dir / "gone"), "health_path": "/health"})
    deployer.up(with_gone)
    assert status(f"http://{address}/gone/health") == 200
    with SteadyLoad(address, f"/{APP}/version", rate=20, max_seconds=240) as load:
        lock = HeldLock(lab, host_name)  # the removal waits for the server's script lock: killed meanwhile
        try:
            pending = killed_up(deployer, config, "gone-deploy", 1.0, tmp_path)
        finally:
            lock.release()
        assert status(f"http://{address}/{APP}/health") == 200
        seconds, _ = converge(deployer, config)
    assert status(f"http://{address}/gone/health") == 404
    assert not host.file("/srv/plumber/gone").exists and not host.file("/etc/plumber-hosting/env/gone.env").exists
    assert kept(host)[1]
    report("kill mid removal", load, seconds, f"pending after the kill: {pending}")
    assert load.result.failed == 0, dict(load.result.statuses)


def up_with_fault(deployer: Deployer, cfg: dict[str, Any], name: str, delay: float,
                  fault: Callable[[], Any]) -> tuple[str, list[Any]]:
    """`pulumi up` (in this thread: the program runs under Pulumi's mocks here) while another thread
    waits for `name`'s step to start, then `delay` s, then does `fault`. Returns the up's error
    (first line) and what `fault` returned."""
    done = threading.Event()
    results: list[Any] = []
    problems: list[BaseException] = []

    def inject() -> None:
        try:
            wait_pending(deployer.state, name, time.monotonic() + 240, lambda: not done.is_set())
            time.sleep(delay)
            results.append(fault())
        except BaseException as e:  # handed to the test
            problems.append(e)

    t = threading.Thread(target=inject, daemon=True)
    t.start()
    error = "none"
    try:
        deployer.up(cfg)
    except Exception as e:  # the up is expected to fail
        error = str(e).splitlines()[0][:200]
    finally:
        done.set()
        t.join(timeout=300)
    if problems:
        raise problems[0]
    return error, results


class HeldLock:
    """Holds the server's plumber-hosting script lock (tests: makes a script wait in its preamble)."""

    def __init__(self, lab: Lab, host_name: str) -> None:
        self.proc = subprocess.Popen(
            [*lab.ssh_argv(host_name), "exec 9>/run/lock/plumber-hosting.lock; flock 9; echo locked; read -r _"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # `read` sees EOF: the remote shell exits, the lock is free
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


# Cut the SSH connections that carry a program command: sshd hands the command to `bash -c`, which
# expands the script's heredoc and execs `bash -c "<script>"`, so the process's arguments start with the
# script's header comment. Kill the sshd session process above it (the listener, /run/sshd.pid or PID 1's
# child `sshd -D`, stays). The bracket keeps this line from matching itself.
CUT = r"""
main=$(pgrep -o -x sshd)
for p in $(pgrep -f '^bash -c # [p]lumber-hosting: '); do
  pp=$(ps -o ppid= -p "$p" | tr -d ' ')
  while [ -n "$pp" ] && [ "$pp" != 1 ] && [ "$pp" != "$main" ]; do
    case "$(ps -o comm= -p "$pp")" in  # OpenSSH >= 9.8 (Debian 13): a connection is an sshd-session
      sshd | sshd-session) kill -9 "$pp" && echo "$pp" ;;
    esac
    pp=$(ps -o ppid= -p "$pp" | tr -d ' ')
  done
done
"""


def test_ssh_connection_dropped_mid_command(deployer: Deployer, config: dict[str, Any], app_dir: Path, address: str,
                                            host: Any, lab: Lab, host_name: str) -> None:
    before = kept(host)
    version(app_dir / APP, "v3")
    with SteadyLoad(address, f"/{APP}/version", rate=20, max_seconds=240) as load:
        lock = HeldLock(lab, host_name)  # the deploy waits in its preamble: cut before it changed anything
        def cut_then_unlock() -> list[str]:
            try:
                return lab.ssh(host_name, CUT, timeout=30).stdout.decode().split()
            finally:
                lock.release()  # never leave the deploy waiting on a lock held by this test

        try:
            error, cut = up_with_fault(deployer, config, f"{APP}-deploy", 1.0, cut_then_unlock)
        finally:
            lock.release()
        assert cut and cut[0], "no connection to cut"
        assert error != "none", "the up should fail when its connection drops"
        assert status(f"http://{address}/{APP}/health") == 200
        releases, env = kept(host)
        assert env and set(before[0]) <= set(releases)
        seconds, _ = converge(deployer, config)
    after = ver(address)
    report("SSH connection dropped mid deploy", load, seconds, f"the up failed with: {error}; {after} after the next up")
    assert load.result.failed == 0, dict(load.result.statuses)
    assert after == "v3"


def test_host_reboots_mid_deploy(deployer: Deployer, config: dict[str, Any], app_dir: Path, address: str,
                                 host: Any, lab: Lab, host_name: str) -> None:
    before = kept(host)
    version(app_dir / APP, "v4")
    with SteadyLoad(address, f"/{APP}/version", rate=20, max_seconds=300) as load:
        started = time.monotonic()
        error, _ = up_with_fault(deployer, config, f"{APP}-deploy", 0.1, lambda: lab.reboot(host_name))
        back = None
        for _ in range(120):  # serving again on its own after the reboot
            if status(f"http://{address}/{APP}/health", "--max-time", "2") == 200:
                back = time.monotonic() - started
                break
            time.sleep(0.5)
        assert back is not None, "not serving after the reboot"
        releases, env = kept(fresh_host(lab))
        assert env and set(before[0]) <= set(releases)
        seconds, _ = converge(deployer, config)
    after = ver(address)
    report("host reboot mid deploy", load, seconds,
           f"serving again {back:.1f}s after the up began; the up failed with: {error}; {after} after the next up")
    assert load.result.failed < load.result.total  # requests fail while the host is down: reported above
    assert after == "v4"


def test_key_rotation_updates_every_command_in_place(deployer: Deployer, config: dict[str, Any], address: str,
                                                     host: Any, lab: Lab, host_name: str, tmp_path: Path) -> None:
    """Every declared operation carried out: a new deploy key changes every command's connection, so
    every command (rotation-join too) is updated in place, with no replacement and no failed request."""
    key = tmp_path / "id_new"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rotated", "-f", str(key)], check=True)
    pub = key.with_suffix(".pub").read_text().strip()
    lab.ssh(host_name, f"echo '{pub}' >> /root/.ssh/authorized_keys", check=True)
    cfg = copy.deepcopy(config)
    cfg["ssh_private_key_file"] = str(key)
    plan = deployer.preview(cfg)
    commands = {r.name for r in plan.program.resources if r.type == COMMAND}
    assert plan.changes() == {n: "update" for n in commands}
    with SteadyLoad(address, f"/{APP}/version", rate=20, max_seconds=240) as load:
        result = deployer.up(cfg)
    # every command, and each upload (its connection changed: an update that copies nothing, copyController.go)
    uploads = {r.name for r in plan.program.resources if r.type == COPY}
    assert sorted(result.ops("update")) == sorted(commands | uploads) and "rotation-join" in commands
    print(f"key rotation: {len(commands)} commands updated in place, {load.result.failed} of "
          f"{load.result.total} requests failed")
    assert load.result.failed == 0, dict(load.result.statuses)
    config.clear()
    config.update(cfg)


def test_fault_table() -> None:
    """The figures, together (printed for the e2e summary)."""
    for line in FAULTS:
        print(line)

"""A lab of droplet-like Debian test hosts on this machine (Debian 13 by default).

Each host is a fresh copy of a cached, debootstrapped Debian tree (one per suite:
trixie by default, bookworm on request, ``LAB_SUITE`` or ``suite=``) booted with
``systemd-nspawn`` inside its own network namespace.  The copy is by default an
overlayfs (empty upper layer over the read-only base tree: instant, and nothing to
write or delete on this machine's slow, discard-mounted disk); ``tree_mode="copy"``
or ``LAB_TREE_MODE=copy`` uses ``cp -a`` instead.  The host side runs an
``apt-cacher-ng`` (the guests' only way to Debian's archive), a ``pebble`` ACME
server (a Let's Encrypt stand-in) and ``pebble-challtestsrv`` (pebble's DNS).

The running lab is described by ``.lab/state.json`` so that other processes
(pytest sessions, the Pulumi program, a shell) can use it.  See
/work/shared/hostlab.md for the measurements behind the choices made here.

Every process this module starts is stopped by its recorded PID (checked
against its start time so that a reused PID is never hit), never by name.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger("lab")

REPO_ROOT = Path(__file__).resolve().parents[2]

# --- the base tree -------------------------------------------------------------
# Debian 13 is what a new droplet runs (image debian-13-x64); Debian 12 still works
# (``Lab(suite="bookworm")``, ``reset_host(name, suite="bookworm")``).
SUITES = ("trixie", "bookworm")
SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
VARIANT = "minbase"
# What a DigitalOcean Debian droplet has and deploy scripts may rely on.
# Deliberately absent: nginx, R, plumber, certbot, ufw (the program installs them).
BASE_PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "openssh-server",
    "iproute2",
    "ca-certificates",
    "apt-utils",
    "curl",
    "wget",
    "sudo",
    "gnupg",
    "procps",
    "less",
    "nano",
    "iputils-ping",
    "cron",
    "logrotate",
    "python3",
    "locales",
    "tzdata",
    "netbase",
    "lsb-release",
    "xz-utils",
)
# Bump when the customisation of the base tree below changes.
BASE_RECIPE = "2"
GUEST_API_CA_PATH = "/etc/ssl/lab/pebble-api-ca.pem"

# --- network / ports -------------------------------------------------------------
NET_PREFIX = "10.213"
FIRST_SUBNET = 8
MAX_HOSTS = 16
# Not apt-cacher-ng's default 3142: installing the package on a systemd machine (CI)
# starts a system instance on 0.0.0.0:3142.
ACNG_PORT = 3143
PEBBLE_PORT = 14000
PEBBLE_MGMT_PORT = 15000
CHALL_DNS = "127.0.0.1:8053"
CHALL_MGMT_PORT = 8055
HOST_PREFIX = "lab"  # hosts are lab1, lab2, ...; netns lab-lab1; veth ve-lab1

_NAME_RE = re.compile(rf"^{HOST_PREFIX}\d+$")


class LabError(RuntimeError):
    """Something in the lab did not come up or go down as expected."""


# ================================================================================
# state
# ================================================================================


@dataclass
class HostState:
    name: str
    index: int
    address: str
    host_end: str
    netns: str
    veth: str
    machine_dir: str
    key_path: str
    log_path: str
    ssh_port: int = 22
    user: str = "root"
    suite: str = SUITE
    pid: int | None = None
    pid_starttime: int | None = None


@dataclass
class PebbleState:
    directory_url: str
    api_ca_cert_path: str
    api_ca_cert_pem: str
    guest_api_ca_cert_path: str
    root_url: str
    mgmt_ca_path: str
    pid: int | None = None
    pid_starttime: int | None = None


@dataclass
class ChallTestSrvState:
    management_url: str
    dns_server: str
    default_ipv4: str
    pid: int | None = None
    pid_starttime: int | None = None


@dataclass
class AptCacherState:
    proxy_port: int
    bind_addresses: list[str]
    cache_dir: str
    pid: int | None = None
    pid_starttime: int | None = None


@dataclass
class LabState:
    hosts: list[HostState] = field(default_factory=list)
    pebble: PebbleState | None = None
    challtestsrv: ChallTestSrvState | None = None
    apt_cacher_ng: AptCacherState | None = None
    key_path: str = ""
    ssh_config_path: str = ""
    base_tree: str = ""  # the default suite's tree
    base_trees: dict[str, str] = field(default_factory=dict)  # suite -> tree
    suite: str = SUITE
    tree_mode: str = "overlay"
    created_at: float = 0.0

    def host(self, name: str) -> HostState:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"no lab host named {name!r} (have: {[h.name for h in self.hosts]})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabState:
        def build(klass: Any, raw: dict[str, Any] | None) -> Any:
            if raw is None:
                return None
            names = {f.name for f in fields(klass)}
            return klass(**{k: v for k, v in raw.items() if k in names})

        return cls(
            hosts=[build(HostState, h) for h in data.get("hosts", [])],
            pebble=build(PebbleState, data.get("pebble")),
            challtestsrv=build(ChallTestSrvState, data.get("challtestsrv")),
            apt_cacher_ng=build(AptCacherState, data.get("apt_cacher_ng")),
            key_path=data.get("key_path", ""),
            ssh_config_path=data.get("ssh_config_path", ""),
            base_tree=data.get("base_tree", ""),
            base_trees=data.get("base_trees", {}),
            suite=data.get("suite", SUITE),
            tree_mode=data.get("tree_mode", "overlay"),
            created_at=data.get("created_at", 0.0),
        )


# ================================================================================
# small helpers
# ================================================================================


def _run(
    cmd: Sequence[str],
    *,
    timeout: float = 60,
    check: bool = True,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(
            list(cmd),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {shlex.join(cmd)}") from exc
    if check and res.returncode != 0:
        raise LabError(f"command failed ({res.returncode}): {shlex.join(cmd)}\n{res.stdout}{res.stderr}")
    return res


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time) of a process, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0], int(rest[19])


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _alive(pid: int | None, starttime: int | None) -> bool:
    if not pid:
        return False
    _reap(pid)
    st = _proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return starttime is None or st[1] == starttime


def _wait_gone(pid: int | None, starttime: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid, starttime):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _stop_pid(pid: int | None, starttime: int | None, what: str, grace: float = 10) -> None:
    """SIGTERM, wait, SIGKILL: only if the PID still is the process we started."""
    if not _alive(pid, starttime):
        return
    assert pid is not None
    log.info("stopping %s (pid %d)", what, pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, starttime, grace):
        return
    log.warning("%s (pid %d) ignored SIGTERM, killing it", what, pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, starttime, 5):
        raise LabError(f"could not stop {what} (pid {pid})")


def _spawn(cmd: Sequence[str], log_path: Path, pidfile: Path, env: dict[str, str] | None = None) -> tuple[int, int]:
    """Start a long-running process in its own session; return (pid, starttime).

    The pidfile ("PID STARTTIME") lets down() find it even if state.json is lost.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        out.write(f"\n=== {time.strftime('%F %T')} {shlex.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    st = _proc_stat(proc.pid)
    if st is None:
        raise LabError(f"{cmd[0]} exited at once, see {log_path}")
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{proc.pid} {st[1]}\n")
    return proc.pid, st[1]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_port(
    host: str,
    port: int,
    what: str,
    pid: int,
    starttime: int,
    log_path: Path,
    timeout: float = 20,
) -> None:
    deadline = time.monotonic() + timeout
    while not _port_open(host, port):
        if not _alive(pid, starttime):
            raise LabError(f"{what} died on start:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise LabError(f"{what} not listening on {host}:{port} after {timeout}s:\n{_tail(log_path)}")
        time.sleep(0.1)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    out: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mp = line.split()[4].replace("\\040", " ")
            if mp.startswith(prefix) or mp == prefix[:-1]:
                out.append(mp)
    return sorted(out, key=len, reverse=True)


def _rmtree(path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return
    for mp in _mounts_under(path):
        if _run(["umount", mp], check=False).returncode != 0:
            _run(["umount", "-l", mp], check=False)
    _run(["rm", "-rf", "--one-file-system", str(path)], timeout=300)


def _https_get(url: str, cafile: str, timeout: float = 10) -> bytes:
    ctx = ssl.create_default_context(cafile=cafile)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
    with opener.open(url, timeout=timeout) as resp:
        return resp.read()


def _http_post_json(url: str, payload: dict[str, Any], timeout: float = 10) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with opener.open(req, timeout=timeout) as resp:
        return resp.read()


# ================================================================================
# the lab
# ================================================================================


class Lab:
    """Droplet-like Debian hosts (systemd-nspawn) plus apt proxy and ACME server."""

    def __init__(self, root: Path | str | None = None, tree_mode: str | None = None, suite: str | None = None) -> None:
        """`tree_mode`: "overlay" (default; env LAB_TREE_MODE) or "copy" (cp -a per host).
        `suite`: the Debian release of the hosts, "trixie" (default; env LAB_SUITE) or "bookworm"."""
        self.suite = suite or os.environ.get("LAB_SUITE", SUITE)
        if self.suite not in SUITES:
            raise ValueError(f"suite must be one of {SUITES}, not {self.suite!r}")
        self.repo_root = Path(root) if root is not None else REPO_ROOT
        self.tree_mode = tree_mode or os.environ.get("LAB_TREE_MODE", "overlay")
        if self.tree_mode not in ("overlay", "copy"):
            raise ValueError(f"tree_mode must be 'overlay' or 'copy', not {self.tree_mode!r}")
        self.dir = self.repo_root / ".lab"
        self.cache_dir = self.dir / "cache"
        self.state_path = self.dir / "state.json"
        self.key_path = self.dir / "id_ed25519"
        self.ssh_config_path = self.dir / "ssh_config"
        self.machines_dir = self.dir / "machines"
        self.run_dir = self.dir / "run"
        self._lock_fd: int | None = None
        self._lock_depth = 0

    # --- state -------------------------------------------------------------------
    @property
    def state(self) -> LabState | None:
        try:
            return LabState.from_dict(json.loads(self.state_path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("unreadable %s (%s), treating the lab as gone", self.state_path, exc)
            return None

    def _save(self, state: LabState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state.to_dict(), indent=2) + "\n")
        tmp.replace(self.state_path)

    def _require_state(self) -> LabState:
        st = self.state
        if st is None:
            raise LabError(f"the lab is not up (no {self.state_path})")
        return st

    def host(self, name: str) -> HostState:
        return self._require_state().host(name)

    def is_up(self) -> bool:
        """True when state.json exists and every recorded process is alive."""
        st = self.state
        if st is None or not st.hosts:
            return False
        procs = [(h.pid, h.pid_starttime) for h in st.hosts]
        for svc in (st.pebble, st.challtestsrv, st.apt_cacher_ng):
            if svc is None:
                return False
            procs.append((svc.pid, svc.pid_starttime))
        return all(_alive(p, s) for p, s in procs)

    @contextlib.contextmanager
    def _locked(self, timeout: float = 900) -> Iterator[None]:
        """One lab operation at a time on this machine (re-entrant per Lab object)."""
        if self._lock_depth == 0:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        os.close(fd)
                        raise LabError("another lab operation holds .lab/lock") from None
                    time.sleep(0.5)
            self._lock_fd = fd
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # --- public API --------------------------------------------------------------
    def up(self, n_hosts: int = 1) -> LabState:
        """Clean up any previous lab, then start apt proxy, pebble and n fresh hosts."""
        if not 1 <= n_hosts <= MAX_HOSTS:
            raise ValueError(f"n_hosts must be 1..{MAX_HOSTS}")
        if os.geteuid() != 0:
            raise LabError("the lab needs root (netns, veth, systemd-nspawn)")
        t0 = time.monotonic()
        with self._locked():
            self.down()
            self.dir.mkdir(parents=True, exist_ok=True)
            self._ensure_key()
            state = LabState(
                suite=self.suite,
                key_path=str(self.key_path),
                ssh_config_path=str(self.ssh_config_path),
                tree_mode=self.tree_mode,
                created_at=time.time(),
            )
            for i in range(n_hosts):
                state.hosts.append(self._host_plan(i, self.suite))
            self._save(state)
            try:
                for h in state.hosts:
                    self._net_up(h, state.hosts[0].host_end)
                log.info("network ready")
                self._start_apt_cacher(state)
                log.info("apt-cacher-ng ready")
                state.base_tree = str(self._ensure_base(self.suite))
                state.base_trees = {self.suite: state.base_tree}
                self._save(state)
                self._start_pebble(state)
                log.info("pebble ready")
                for h in state.hosts:
                    self._prepare_tree(state, h)
                    self._boot(state, h)
                self._write_ssh_config(state)
                for h in state.hosts:
                    self._wait_ready(h)
            except BaseException:
                log.error("lab up failed, tearing down (logs stay in %s)", self.dir)
                with contextlib.suppress(Exception):
                    self.down()
                raise
        log.info("lab up with %d host(s) in %.1fs", n_hosts, time.monotonic() - t0)
        return state

    def down(self) -> None:
        """Stop everything the lab started. Idempotent; works from a stale state.json."""
        with self._locked():
            state = self.state
            hosts = state.hosts if state else []
            if state is not None:
                log.info("taking down the lab from %s", self.state_path)
            self._stop_hosts(hosts)
            if state is not None:
                for svc, what in (
                    (state.pebble, "pebble"),
                    (state.challtestsrv, "pebble-challtestsrv"),
                    (state.apt_cacher_ng, "apt-cacher-ng"),
                ):
                    if svc is not None:
                        _stop_pid(svc.pid, svc.pid_starttime, what)
            self._stop_pidfiles()
            names = {h.name for h in hosts} | self._stray_names()
            for name in sorted(names):
                self._net_down(name)
            self._clean_nspawn_run(names)
            _rmtree(self.machines_dir)
            with contextlib.suppress(FileNotFoundError):
                self.state_path.unlink()
            with contextlib.suppress(FileNotFoundError):
                self.ssh_config_path.unlink()

    def _stop_pidfiles(self) -> None:
        """Stop whatever a lost/stale state.json no longer knows about (hosts first)."""
        if not self.run_dir.is_dir():
            return
        files = sorted(self.run_dir.glob("*.pid"), key=lambda p: not p.name.startswith("host-"))
        for pf in files:
            try:
                pid_s, start_s = pf.read_text().split()
                pid, start = int(pid_s), int(start_s)
            except (OSError, ValueError):
                pf.unlink(missing_ok=True)
                continue
            if _alive(pid, start):
                grace = 20.0 if pf.name.startswith("host-") else 10.0
                _stop_pid(pid, start, f"{pf.stem} (from {pf})", grace=grace)
            pf.unlink(missing_ok=True)

    def reboot(self, host_name: str, timeout: float = 120) -> HostState:
        """Clean reboot: systemctl reboot inside, wait for nspawn to exit, boot the same tree."""
        with self._locked():
            state = self._require_state()
            h = state.host(host_name)
            self._shutdown(h, "reboot")
            self._boot(state, h)
            self._wait_ready(h, timeout=timeout)
            return h

    def reset_host(self, host_name: str, timeout: float = 120, suite: str | None = None) -> HostState:
        """Throw the host's tree away and boot a fresh copy of the base tree.

        `suite` switches the host to another Debian release (its base tree is
        debootstrapped on first use); without it the host keeps its release."""
        if suite is not None and suite not in SUITES:
            raise ValueError(f"suite must be one of {SUITES}, not {suite!r}")
        with self._locked():
            state = self._require_state()
            h = state.host(host_name)
            if suite is not None and suite not in state.base_trees:
                state.base_trees[suite] = str(self._ensure_base(suite))
                self._save(state)
            self._shutdown(h, "poweroff")
            h.suite = suite or h.suite
            self._prepare_tree(state, h)
            self._boot(state, h)
            self._wait_ready(h, timeout=timeout)
            return h

    def ssh(
        self,
        host_name: str,
        command: str | Sequence[str],
        stdin: bytes | None = None,
        timeout: float = 600,
        check: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a shell command on a host as root; stdout/stderr are bytes."""
        h = self.host(host_name)
        return self._ssh(h, command, stdin=stdin, timeout=timeout, check=check)

    def ssh_argv(self, host_name: str) -> list[str]:
        """The ssh command line (without the remote command) to reach a host."""
        return self._ssh_base(self.host(host_name))

    def pebble_root_pem(self) -> str:
        """pebble's current issuing root (changes on every pebble start)."""
        st = self._require_state()
        if st.pebble is None:
            raise LabError("pebble is not running")
        return _https_get(st.pebble.root_url, st.pebble.mgmt_ca_path).decode()

    def dns_add_a(self, name: str, ip: str) -> None:
        """Make pebble's DNS answer `name` with `ip` (default answer: first guest IP)."""
        st = self._require_state()
        if st.challtestsrv is None:
            raise LabError("pebble-challtestsrv is not running")
        host = name if name.endswith(".") else name + "."
        _http_post_json(st.challtestsrv.management_url + "/add-a", {"host": host, "addresses": [ip]})

    def dns_clear_a(self, name: str) -> None:
        st = self._require_state()
        if st.challtestsrv is None:
            raise LabError("pebble-challtestsrv is not running")
        host = name if name.endswith(".") else name + "."
        _http_post_json(st.challtestsrv.management_url + "/clear-a", {"host": host})

    # --- ssh ---------------------------------------------------------------------
    def _ssh_base(self, h: HostState, connect_timeout: int = 5) -> list[str]:
        return [
            "ssh", "-F", "/dev/null", "-i", h.key_path,
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", f"ConnectTimeout={connect_timeout}",
            "-o", "ServerAliveInterval=15",
            "-p", str(h.ssh_port), f"{h.user}@{h.address}",
        ]  # fmt: skip

    def _ssh(
        self,
        h: HostState,
        command: str | Sequence[str],
        stdin: bytes | None = None,
        timeout: float = 600,
        check: bool = False,
        connect_timeout: int = 5,
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = command if isinstance(command, str) else shlex.join(command)
        argv = [*self._ssh_base(h, connect_timeout), "--", cmd]
        try:
            res = subprocess.run(
                argv,
                check=False,
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"ssh {h.name}: timed out after {timeout}s: {cmd}") from exc
        if check and res.returncode != 0:
            raise LabError(
                f"ssh {h.name} failed ({res.returncode}): {cmd}\n"
                f"{res.stdout.decode(errors='replace')}{res.stderr.decode(errors='replace')}"
            )
        return res

    def _ensure_key(self) -> None:
        if self.key_path.exists() and self.key_path.with_suffix(".pub").exists():
            return
        for p in (self.key_path, self.key_path.with_suffix(".pub")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        _run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "plumber-hosting-lab",
                "-f",
                str(self.key_path),
            ]
        )

    def _write_ssh_config(self, state: LabState) -> None:
        blocks = []
        common = (
            f"  User root\n  Port 22\n  IdentityFile {state.key_path}\n  IdentitiesOnly yes\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        )
        for h in state.hosts:
            blocks.append(f"Host {h.name}\n  HostName {h.address}\n{common}")
        blocks.append(f"Host {NET_PREFIX}.*\n{common}")
        _write(self.ssh_config_path, "\n".join(blocks))

    # --- network -----------------------------------------------------------------
    def _host_plan(self, i: int, suite: str) -> HostState:
        name = f"{HOST_PREFIX}{i + 1}"
        net = f"{NET_PREFIX}.{FIRST_SUBNET + i}"
        return HostState(
            name=name,
            index=i,
            address=f"{net}.2",
            host_end=f"{net}.1",
            netns=f"lab-{name}",
            veth=f"ve-{name}",
            machine_dir=str(self.machines_dir / name / "root"),
            key_path=str(self.key_path),
            log_path=str(self.dir / f"{name}.log"),
            suite=suite,
        )

    def _net_up(self, h: HostState, first_host_end: str) -> None:
        peer = f"vg-{h.name}"
        ns = ["ip", "-n", h.netns]
        _run(["ip", "netns", "add", h.netns])
        _run(["ip", "link", "add", h.veth, "type", "veth", "peer", "name", peer])
        _run(["ip", "link", "set", peer, "netns", h.netns])
        _run([*ns, "link", "set", peer, "name", "eth0"])
        _run([*ns, "addr", "add", f"{h.address}/24", "dev", "eth0"])
        _run([*ns, "link", "set", "lo", "up"])
        _run([*ns, "link", "set", "eth0", "up"])
        _run(["ip", "addr", "add", f"{h.host_end}/24", "dev", h.veth])
        _run(["ip", "link", "set", h.veth, "up"])
        if h.host_end != first_host_end:
            # pebble listens on the first host end; the host accepts packets for any
            # of its local addresses, so no forwarding is involved.
            _run([*ns, "route", "add", f"{first_host_end}/32", "via", h.host_end])

    def _stray_names(self) -> set[str]:
        """Host names of lab netns/veths left by a run whose state.json is lost."""
        names: set[str] = set()
        res = _run(["ip", "netns", "list"], check=False)
        for line in res.stdout.splitlines():
            ns = line.split()[0] if line.split() else ""
            if ns.startswith("lab-") and _NAME_RE.match(ns[4:]):
                names.add(ns[4:])
        res = _run(["ip", "-o", "link", "show"], check=False)
        for m in re.finditer(rf"^\d+: ve-({HOST_PREFIX}\d+)[@:]", res.stdout, re.MULTILINE):
            names.add(m.group(1))
        return names

    def _net_down(self, name: str) -> None:
        netns = f"lab-{name}"
        if Path(f"/run/netns/{netns}").exists():
            # Anything still running in the namespace is a leftover of ours
            # (a killed container's processes); identify it by PID.
            for _ in range(3):
                res = _run(["ip", "netns", "pids", netns], check=False)
                pids = [int(p) for p in res.stdout.split() if p.isdigit()]
                if not pids:
                    break
                log.warning("killing leftover processes in netns %s: %s", netns, pids)
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                for pid in pids:
                    _wait_gone(pid, None, 5)
            _run(["ip", "netns", "del", netns], check=False)
        if Path(f"/sys/class/net/ve-{name}").exists():
            _run(["ip", "link", "del", f"ve-{name}"], check=False)

    def _clean_nspawn_run(self, names: set[str]) -> None:
        """Remove what systemd-nspawn leaves in /run for our (stopped) machines."""
        root = Path("/run/systemd/nspawn")
        if not root.exists():
            return
        for name in names:
            # nspawn's image lock is named after the tree's device and inode.
            with contextlib.suppress(OSError):
                st = (self.machines_dir / name / "root").stat()
                (root / "locks" / f"inode-{st.st_dev}:{st.st_ino}").unlink()
        for sub in ("propagate", "unix-export", "incoming"):
            for name in names:
                p = root / sub / name
                if p.exists() or p.is_symlink():
                    with contextlib.suppress(OSError):
                        for mp in _mounts_under(p):
                            _run(["umount", "-l", mp], check=False)
                        if p.is_dir() and not p.is_symlink():
                            shutil.rmtree(p)
                        else:
                            p.unlink()
        # Drop the directory skeleton if nothing else (another nspawn user) is in it.
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        locks = root / "locks"
        if locks.is_dir() and not any(locks.iterdir()):
            with contextlib.suppress(OSError):
                locks.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()

    # --- apt-cacher-ng -----------------------------------------------------------
    def _start_apt_cacher(self, state: LabState) -> None:
        base = self.dir / "apt-cacher-ng"
        conf = base / "conf"
        cache = self.cache_dir / "apt-cacher-ng"
        logdir = base / "log"
        _rmtree(conf)
        shutil.copytree("/etc/apt-cacher-ng", conf)
        with contextlib.suppress(FileNotFoundError):
            (conf / "zz_debconf.conf").unlink()
        for d in (cache, logdir):
            d.mkdir(parents=True, exist_ok=True)
        binds = ["127.0.0.1"] + [h.host_end for h in state.hosts]
        ours = {
            "CacheDir": str(cache),
            "LogDir": str(logdir),
            "SocketPath": str(base / "socket"),
            "PidFile": str(base / "pid"),
            "Port": str(ACNG_PORT),
            "BindAddress": " ".join(binds),
            "ForeGround": "1",
            "ExThreshold": "4",
        }
        kept = []
        for line in Path("/etc/apt-cacher-ng/acng.conf").read_text().splitlines():
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            if s.split(":", 1)[0].strip() in ours:
                continue
            kept.append(line)
        kept += [f"{k}: {v}" for k, v in ours.items()]
        _write(conf / "acng.conf", "\n".join(kept) + "\n")
        _write(conf / "backends_debian", f"{MIRROR}/\n")
        if _port_open("127.0.0.1", ACNG_PORT):
            raise LabError(f"port {ACNG_PORT} is already taken on 127.0.0.1 (not by this lab)")
        log_path = self.dir / "apt-cacher-ng.log"
        pid, start = _spawn(["apt-cacher-ng", "-c", str(conf)], log_path, self.run_dir / "apt-cacher-ng.pid")
        state.apt_cacher_ng = AptCacherState(
            proxy_port=ACNG_PORT, bind_addresses=binds, cache_dir=str(cache),
            pid=pid, pid_starttime=start,
        )  # fmt: skip
        self._save(state)
        for addr in binds:
            _wait_port(addr, ACNG_PORT, "apt-cacher-ng", pid, start, log_path)

    # --- base tree ---------------------------------------------------------------
    def base_key(self, suite: str | None = None) -> str:
        spec = {
            "suite": suite or self.suite, "variant": VARIANT, "mirror": MIRROR,
            "packages": sorted(BASE_PACKAGES), "recipe": BASE_RECIPE,
        }  # fmt: skip
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def _ensure_base(self, suite: str) -> Path:
        """The cached base tree of a suite (one per suite is kept), built if need be."""
        key = self.base_key(suite)
        base = self.cache_dir / f"base-{key}"
        rootfs = base / "rootfs"
        if (base / "complete").exists() and rootfs.is_dir():
            log.info("reusing cached %s base tree %s", suite, base)
            return rootfs
        current = {f"base-{self.base_key(s)}" for s in SUITES}
        for old in self.cache_dir.glob("base-*"):
            if old.name not in current:
                log.info("removing stale base tree %s", old)
                _rmtree(old)
        tmp = self.cache_dir / f"build-{key}"
        _rmtree(tmp)
        tmp.mkdir(parents=True)
        t0 = time.monotonic()
        log.info("debootstrapping %s into %s (through the apt proxy)", suite, tmp)
        env = dict(os.environ, http_proxy=f"http://127.0.0.1:{ACNG_PORT}")
        env.pop("https_proxy", None)
        cmd = [
            "debootstrap", f"--variant={VARIANT}", "--components=main",
            f"--include={','.join(BASE_PACKAGES)}", suite, str(tmp / "rootfs"), MIRROR,
        ]  # fmt: skip
        dlog = self.dir / "debootstrap.log"
        with open(dlog, "wb") as out:
            try:
                rc = subprocess.run(
                    cmd,
                    check=False,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=1200,
                ).returncode
            except subprocess.TimeoutExpired as exc:
                raise LabError("debootstrap took more than 20 minutes") from exc
        if rc != 0:
            raise LabError(f"debootstrap failed ({rc}):\n{_tail(dlog)}")
        self._customize_base(tmp / "rootfs", suite)
        (tmp / "complete").write_text(json.dumps({"key": key, "built": time.time()}))
        tmp.rename(base)
        log.info("base tree built in %.1fs", time.monotonic() - t0)
        return rootfs

    def _customize_base(self, root: Path, suite: str) -> None:
        _write(
            root / "etc/apt/sources.list",
            f"deb {MIRROR} {suite} main\n"
            f"deb {MIRROR} {suite}-updates main\n"
            f"deb {SECURITY_MIRROR} {suite}-security main\n",
        )
        # trixie's debootstrap also writes the deb822 form; one list of sources only.
        with contextlib.suppress(FileNotFoundError):
            (root / "etc/apt/sources.list.d/debian.sources").unlink()
        # Time zone and locale as on a droplet: UTC, C.UTF-8 (en_US.UTF-8 generated).
        lt = root / "etc/localtime"
        if lt.exists() or lt.is_symlink():
            lt.unlink()
        lt.symlink_to("/usr/share/zoneinfo/Etc/UTC")
        _write(root / "etc/timezone", "Etc/UTC\n")
        gen = root / "etc/locale.gen"
        text = gen.read_text() if gen.exists() else ""
        text = text.replace("# en_US.UTF-8 UTF-8", "en_US.UTF-8 UTF-8")
        if "\nen_US.UTF-8 UTF-8" not in "\n" + text:
            text += "en_US.UTF-8 UTF-8\n"
        _write(gen, text)
        _run(["chroot", str(root), "locale-gen"], timeout=300)
        _write(root / "etc/default/locale", "LANG=C.UTF-8\n")
        _write(root / "etc/fstab", "# UNCONFIGURED FSTAB (lab container)\n")
        _write(
            root / "etc/ssh/sshd_config.d/lab.conf",
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUseDNS no\n",
        )
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        _write(root / "etc/machine-id", "")
        with contextlib.suppress(FileNotFoundError):
            (root / "var/lib/dbus/machine-id").unlink()
        (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
        _run(["chroot", str(root), "apt-get", "clean"], timeout=120)
        for p in (root / "var/log").rglob("*"):
            if p.is_file():
                p.write_bytes(b"")

    # --- pebble ------------------------------------------------------------------
    def _make_certs(self, d: Path, host_ends: list[str]) -> tuple[Path, Path, Path]:
        d.mkdir(parents=True, exist_ok=True)
        ca_key, ca_pem = d / "ca.key", d / "ca.pem"
        if not (ca_key.exists() and ca_pem.exists()):
            _run([
                "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", str(ca_key), "-out", str(ca_pem), "-days", "3650",
                "-subj", "/CN=plumber-hosting lab pebble API CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-addext", "subjectKeyIdentifier=hash",
            ])  # fmt: skip
        key, csr, pem = d / "server.key", d / "server.csr", d / "server.pem"
        san = ",".join([f"IP:{ip}" for ip in [*host_ends, "127.0.0.1"]] + ["DNS:localhost"])
        ext = d / "server.ext"
        _write(
            ext,
            f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n",
        )
        _run(
            [
                "openssl",
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(csr),
                "-subj",
                "/CN=pebble",
            ]
        )
        _run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(ca_pem),
                "-CAkey",
                str(ca_key),
                "-CAcreateserial",
                "-days",
                "825",
                "-extfile",
                str(ext),
                "-out",
                str(pem),
            ]
        )
        return ca_pem, pem, key

    def _start_pebble(self, state: LabState) -> None:
        d = self.dir / "pebble"
        first = state.hosts[0]
        ca, cert, key = self._make_certs(d, [h.host_end for h in state.hosts])
        for port in (PEBBLE_MGMT_PORT, CHALL_MGMT_PORT):
            if _port_open("127.0.0.1", port):
                raise LabError(f"port {port} is already taken on 127.0.0.1 (not by this lab)")
        chall_log = self.dir / "challtestsrv.log"
        pid, start = _spawn(
            [
                "pebble-challtestsrv", "-defaultIPv4", first.address, "-defaultIPv6", "",
                "-dns01", CHALL_DNS, "-http01", "", "-https01", "", "-tlsalpn01", "",
                "-management", f"127.0.0.1:{CHALL_MGMT_PORT}",
            ],
            chall_log,
            self.run_dir / "challtestsrv.pid",
        )  # fmt: skip
        state.challtestsrv = ChallTestSrvState(
            management_url=f"http://127.0.0.1:{CHALL_MGMT_PORT}", dns_server=CHALL_DNS,
            default_ipv4=first.address, pid=pid, pid_starttime=start,
        )  # fmt: skip
        self._save(state)
        _wait_port("127.0.0.1", CHALL_MGMT_PORT, "pebble-challtestsrv", pid, start, chall_log)

        config = {
            "pebble": {
                "listenAddress": f"{first.host_end}:{PEBBLE_PORT}",
                "managementListenAddress": f"127.0.0.1:{PEBBLE_MGMT_PORT}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": 80,
                "tlsPort": 443,
                # Certificates name a revocation source, as Let's Encrypt's do (a
                # check of the TLS setup would flag a certificate without one);
                # nothing answers there, so nginx staples nothing.
                "ocspResponderURL": f"http://{first.host_end}:{PEBBLE_PORT + 2}/ocsp",
                "externalAccountBindingRequired": False,
            }
        }
        _write(d / "config.json", json.dumps(config, indent=2) + "\n")
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
        peb_log = self.dir / "pebble.log"
        pid, start = _spawn(
            ["pebble", "-config", str(d / "config.json"), "-dnsserver", CHALL_DNS],
            peb_log,
            self.run_dir / "pebble.pid",
            env,
        )
        state.pebble = PebbleState(
            directory_url=f"https://{first.host_end}:{PEBBLE_PORT}/dir",
            api_ca_cert_path=str(ca),
            api_ca_cert_pem=ca.read_text(),
            guest_api_ca_cert_path=GUEST_API_CA_PATH,
            root_url=f"https://127.0.0.1:{PEBBLE_MGMT_PORT}/roots/0",
            mgmt_ca_path=str(ca),
            pid=pid,
            pid_starttime=start,
        )
        self._save(state)
        _wait_port(first.host_end, PEBBLE_PORT, "pebble", pid, start, peb_log)
        _wait_port("127.0.0.1", PEBBLE_MGMT_PORT, "pebble", pid, start, peb_log)
        _https_get(state.pebble.directory_url, str(ca))  # TLS chain sanity check

    # --- hosts -------------------------------------------------------------------
    @staticmethod
    def _tree_of(state: LabState, h: HostState) -> str:
        return state.base_trees.get(h.suite) or state.base_tree

    def _prepare_tree(self, state: LabState, h: HostState) -> None:
        tree = Path(h.machine_dir)
        hdir = tree.parent
        _rmtree(hdir)
        if state.tree_mode == "overlay":
            # A fresh, empty upper layer over the read-only base tree: the same
            # result as a copy without writing (and later deleting) ~300 MB per host.
            upper, work = hdir / "upper", hdir / "work"
            for d in (upper, work, tree):
                d.mkdir(parents=True)
            opts = f"lowerdir={self._tree_of(state, h)},upperdir={upper},workdir={work}"
            _run(["mount", "-t", "overlay", "overlay", "-o", opts, str(tree)])
        else:
            hdir.mkdir(parents=True)
            _run(["cp", "-a", "--reflink=auto", self._tree_of(state, h), str(tree)], timeout=600)
        etc = tree / "etc"
        _write(etc / "hostname", f"{h.name}\n")
        _write(
            etc / "hosts",
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{h.name}\n{h.address}\t{h.name}\n\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\n"
            "ff02::2\tip6-allrouters\n",
        )
        _write(etc / "machine-id", secrets.token_hex(16) + "\n", 0o444)
        _write(etc / "resolv.conf", f"nameserver {h.host_end}\n")
        _write(
            etc / "apt/apt.conf.d/01proxy",
            f'Acquire::http::Proxy "http://{h.host_end}:{ACNG_PORT}";\n',
        )
        if h.suite != "bookworm":
            # OpenSSH 9.8+ refuses a source for a while after connections that close
            # before authenticating (PerSourcePenalties); the lab polls sshd while the
            # host boots, from the host end, which is the admin's address here too.
            _write(
                etc / "ssh/sshd_config.d/lab-penalties.conf",
                f"PerSourcePenaltyExemptList {NET_PREFIX}.0.0/16\n",
            )
        _run(["ssh-keygen", "-A", "-f", str(tree)])
        pub = self.key_path.with_suffix(".pub").read_text()
        ssh_dir = tree / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        _write(ssh_dir / "authorized_keys", pub, 0o600)
        if state.pebble is not None:
            _write(tree / GUEST_API_CA_PATH.lstrip("/"), state.pebble.api_ca_cert_pem)
        log.info("%s: fresh tree in %s", h.name, tree)

    def _boot(self, state: LabState, h: HostState) -> None:
        if _alive(h.pid, h.pid_starttime):
            raise LabError(f"{h.name} is already running (pid {h.pid})")
        self._clean_nspawn_run({h.name})
        cmd = [
            "systemd-nspawn", "-b", "--register=no", "--keep-unit",
            "--capability=CAP_NET_ADMIN", f"--network-namespace-path=/run/netns/{h.netns}",
            "--console=read-only", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
            "-D", h.machine_dir, "-M", h.name,
        ]  # fmt: skip
        h.pid, h.pid_starttime = _spawn(cmd, Path(h.log_path), self.run_dir / f"host-{h.name}.pid")
        self._save(state)

    def _wait_ready(self, h: HostState, timeout: float = 120) -> None:
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            if not _alive(h.pid, h.pid_starttime):
                raise LabError(f"{h.name}: systemd-nspawn exited:\n{_tail(Path(h.log_path))}")
            try:
                if self._ssh(h, "true", timeout=10, connect_timeout=2).returncode == 0:
                    break
            except LabError:
                pass
            if time.monotonic() > deadline:
                raise LabError(f"{h.name}: no SSH after {timeout}s:\n{_tail(Path(h.log_path))}")
            time.sleep(0.2)
        left = max(10, int(deadline - time.monotonic()))
        res = self._ssh(h, f"timeout {left} systemctl is-system-running --wait", timeout=left + 10)
        status = res.stdout.decode().strip()
        if status == "running":
            log.info("%s is up (%s) after %.1fs", h.name, h.address, time.monotonic() - t0)
        elif status == "degraded":
            failed = self._ssh(h, "systemctl --failed --no-legend --plain", timeout=20)
            log.warning("%s is degraded; failed units:\n%s", h.name, failed.stdout.decode())
        else:
            raise LabError(f"{h.name}: systemctl is-system-running says {status!r}")

    def _shutdown(self, h: HostState, how: str, timeout: float = 20) -> None:
        """`systemctl poweroff|reboot` inside; wait for nspawn to exit; kill it if need be."""
        if not _alive(h.pid, h.pid_starttime):
            return
        with contextlib.suppress(LabError):
            self._ssh(h, f"systemctl {how}", timeout=10, connect_timeout=3)
        self._wait_or_kill(h, timeout)

    def _wait_or_kill(self, h: HostState, timeout: float) -> None:
        if not _wait_gone(h.pid, h.pid_starttime, timeout):
            log.warning("%s did not stop within %ss, terminating nspawn", h.name, timeout)
            _stop_pid(h.pid, h.pid_starttime, f"systemd-nspawn {h.name}", grace=5)
        h.pid = h.pid_starttime = None
        self._clean_nspawn_run({h.name})

    def _stop_hosts(self, hosts: list[HostState], timeout: float = 20) -> None:
        running = [h for h in hosts if _alive(h.pid, h.pid_starttime)]
        procs = []
        for h in running:
            argv = [*self._ssh_base(h, 3), "--", "systemctl poweroff"]
            procs.append(
                subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for h in running:
            self._wait_or_kill(h, timeout)


def status_text(lab: Lab) -> str:
    """Human-readable description of how to reach the running lab."""
    st = lab.state
    if st is None:
        return "lab is down"
    lines = [f"lab is {'up' if lab.is_up() else 'partly up (stale?)'}; state: {lab.state_path}"]
    for h in st.hosts:
        alive = "running" if _alive(h.pid, h.pid_starttime) else "STOPPED"
        lines += [
            f"{h.name}: {alive} ({h.suite}) pid={h.pid} address={h.address} host_end={h.host_end}",
            f"  ssh -F {st.ssh_config_path} {h.name}",
            f"  {shlex.join(lab.ssh_argv(h.name))}",
        ]
    if st.pebble:
        lines.append(
            f"pebble: {st.pebble.directory_url} (API CA {st.pebble.api_ca_cert_path}; "
            f"in guests {st.pebble.guest_api_ca_cert_path}); roots: {st.pebble.root_url}"
        )
    if st.challtestsrv:
        lines.append(
            f"challtestsrv: {st.challtestsrv.management_url} "
            f"(DNS {st.challtestsrv.dns_server}, default A {st.challtestsrv.default_ipv4})"
        )
    if st.apt_cacher_ng:
        lines.append(
            f"apt-cacher-ng: port {st.apt_cacher_ng.proxy_port} on "
            f"{', '.join(st.apt_cacher_ng.bind_addresses)}; cache {st.apt_cacher_ng.cache_dir}"
        )
    return "\n".join(lines)

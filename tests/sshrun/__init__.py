"""TEST CODE: pulumi-command v1.2.1's SSH side, as a Go program (``main.go``).

The test engine (tests/engine.py) carries out every declared
``command:remote:Command`` and ``command:remote:CopyToRemote`` through it, so
the commands travel over the same Go ``golang.org/x/crypto/ssh`` client code the
real provider runs (see main.go for the mirrored source, tests/ENGINE.md for the
behaviours). The binary is built at first use into a cache directory keyed by
the source's hash, from the Debian Go packages (no network):
golang-go, golang-golang-x-crypto-dev, golang-github-pkg-sftp-dev.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent / "main.go"
GOPATH = "/usr/share/gocode"  # where Debian's golang-*-dev packages put their sources


class RunnerUnavailableError(RuntimeError):
    pass


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "plumber-hosting"


def binary() -> Path:
    """The built runner; built now if the source changed since the last build."""
    go = shutil.which("go")
    if go is None:
        raise RunnerUnavailableError("`go` is not installed: run `make deps` (golang-go and the Go packages)")
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256(SOURCE.read_bytes() + version.encode()).hexdigest()[:16]
    out = _cache_dir() / f"sshrun-{digest}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".build-"))
    try:
        env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOFLAGS": "",
               "GOCACHE": str(_cache_dir() / "go-build"), "CGO_ENABLED": "0"}
        proc = subprocess.run([go, "build", "-o", str(tmp / "sshrun"), str(SOURCE)],
                              capture_output=True, text=True, env=env, cwd=tmp)
        if proc.returncode != 0:
            raise RunnerUnavailableError(
                f"building {SOURCE} failed (run `make deps` for the Go packages):\n{proc.stderr}")
        (tmp / "sshrun").replace(out)  # atomic: concurrent builders each rename a complete binary
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@dataclass
class Result:
    """What the provider's operation returned: outputs, or the error text it would report."""

    stdout: str
    stderr: str
    error: str | None  # the provider's error message (None: success)
    warnings: list[str]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def _wire(connection: dict[str, Any]) -> dict[str, Any]:
    """Numbers arrive from the program as protobuf doubles (15.0); the provider decodes the integer
    fields (dialErrorLimit, perDialTimeout) into Go ints, as this does."""
    out = dict(connection)
    for k in ("dialErrorLimit", "perDialTimeout"):
        if isinstance(out.get(k), float) and out[k].is_integer():
            out[k] = int(out[k])
    if isinstance(out.get("proxy"), dict):
        raise NotImplementedError("the test engine does not carry out proxy connections")
    return out


def _call(mode: str, request: dict[str, Any], timeout: float) -> Result:
    request = {**request, "connection": _wire(request["connection"])}
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}  # no agent: the key decides
    proc = subprocess.run([str(binary()), mode], input=json.dumps(request), capture_output=True,
                          text=True, timeout=timeout, env=env)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"sshrun {mode} crashed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout)
    return Result(out["stdout"], out["stderr"], out["error"], out["warnings"], time.monotonic() - started)


def run(
    connection: dict[str, Any],
    command: str,
    stdin: str | None = None,
    *,
    environment: dict[str, str] | None = None,
    add_previous_output_in_env: bool | None = None,
    logging: str | None = None,
    previous_stdout: str = "",
    previous_stderr: str = "",
    timeout: float = 900,
) -> Result:
    """remote.Command's run() (commandOutputs.go): ``connection`` as declared (camelCase keys).

    ``previous_*`` are the outputs an Update starts from (commandController.go Update:
    ``CommandOutputs{CommandInputs: news, BaseOutputs: olds.BaseOutputs}``); they are sent as
    PULUMI_COMMAND_STDOUT/STDERR unless ``add_previous_output_in_env`` is False.
    """
    return _call("run", {
        "connection": connection, "command": command, "stdin": stdin, "environment": environment or {},
        "addPreviousOutputInEnv": add_previous_output_in_env, "logging": logging,
        "stdout": previous_stdout, "stderr": previous_stderr,
    }, timeout)


def copy_to_remote(
    connection: dict[str, Any],
    remote_path: str,
    *,
    path: str | None = None,
    text: str | None = None,
    timeout: float = 900,
) -> Result:
    """CopyToRemote's copyToRemote() (copyController.go): a file/directory ``path`` or a ``text`` asset."""
    if (path is None) == (text is None):
        raise ValueError("exactly one of path, text")
    return _call("copy", {"connection": connection, "remotePath": remote_path, "path": path, "text": text}, timeout)

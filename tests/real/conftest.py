"""The real Pulumi engine: the CLI built by `make pulumi` (toolchain/build.sh), driven through the
Python SDK's Automation API.

The Automation API's inline programs need no language host: the test process serves the language
runtime itself (pulumi/automation/_server.py ``LanguageServer``) and passes its address to the CLI
with ``--client`` (pulumi/automation/_stack.py ``up``/``preview``/``destroy``; the flag is
pkg/cmd/pulumi/operations/up.go:812 at v3.274.0). That matters here: this workplace's Go proxy does
not serve the Python language host module (toolchain/build.sh), so `pulumi up` of a project
directory cannot run, while an inline program can.

State goes to a file backend per test (``file://<tmp>``), secrets to a passphrase provider; the
offline settings come from toolchain/pulumi.env, the one place they are set.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.conftest import REAL_HOME

ROOT = Path(__file__).resolve().parents[2]


def toolchain_env() -> dict[str, str]:
    """toolchain/pulumi.env as a dict (KEY=value lines; # comments)."""
    out: dict[str, str] = {}
    for line in (ROOT / "toolchain" / "pulumi.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope="session")
def pulumi_bin() -> Path:
    """The directory holding the pinned `pulumi` (built once, then from the cache)."""
    # With the user's HOME (tests/conftest.py swaps in a throwaway one): the cache lives there.
    env = {**os.environ, "HOME": REAL_HOME}
    done = subprocess.run([str(ROOT / "toolchain" / "build.sh"), "--bin"], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        pytest.fail(f"toolchain/build.sh failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@dataclass
class RealStack:
    """One stack of an inline program on its own file backend."""

    stack: auto.Stack
    log: list[str]

    def output(self) -> str:
        return "\n".join(self.log)


@pytest.fixture
def real_stack(pulumi_bin: Path, tmp_path: Path) -> Iterator[Callable[..., RealStack]]:
    """``real_stack(program, project=..., stack=...)``: select-or-create that stack with ``program``."""
    (tmp_path / "state").mkdir()
    env = {**toolchain_env(), "PULUMI_CONFIG_PASSPHRASE": "real-engine-tests"}
    cmd = auto.PulumiCommand(root=str(pulumi_bin.parent))
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the Automation API's own CLI calls (version, stack select) see them too

    def make(program: Callable[[], None], *, project: str = "plumber-hosting", stack: str = "dev") -> RealStack:
        opts = auto.LocalWorkspaceOptions(
            work_dir=str(tmp_path),
            pulumi_home=str(tmp_path / "home"),
            pulumi_command=cmd,
            env_vars=env,
            project_settings=auto.ProjectSettings(
                name=project, runtime="python", backend=auto.ProjectBackend(url=f"file://{tmp_path / 'state'}")
            ),
        )
        s = auto.create_or_select_stack(stack, project_name=project, program=program, opts=opts)
        return RealStack(stack=s, log=[])

    yield make
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v

"""End-to-end fixtures: a lab host, a local CRAN-like repository, and a
deployer that runs the real program under mocks and carries out its remote
commands on the host with the test engine."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import testinfra

from tests.e2e.cranrepo import RepoServer, build
from tests.engine import COMMAND, CommandFailedError, Engine, Plan, UpResult
from tests.lab.lab import Lab
from tests.program import ProgramRun, stack_config

pytestmark = pytest.mark.e2e

# Every (command resource, operation) the suite carried out by the Go runner (tests/sshrun, as
# pulumi-command does), and every operation a declared command has (create, update, delete).
RAN: set[tuple[str, str]] = set()
DECLARED: dict[str, set[str]] = {}
RUNNER_STEPS: dict[str, int] = {}  # runner -> steps it carried out
TIMES: list[tuple[str, float, str]] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    started = time.monotonic()
    outcome = yield
    TIMES.append((item.nodeid, time.monotonic() - started, "failed" if outcome.excinfo else "passed"))


def _kind(command: str) -> str:
    """`hello-deploy` -> `<app>-deploy`: the command's script, not the app (nor the replica)."""
    command = re.sub(r"@\d+", "", command)
    for suffix in ("-deploy", "-upload"):
        if command.endswith(suffix):
            return "<app>" + suffix
    return command


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMES:
        return
    tr = terminalreporter
    tr.section("end-to-end scenarios (wall time)")
    for nodeid, seconds, outcome in TIMES:
        tr.write_line(f"{seconds:7.1f}s  {outcome:6}  {nodeid.split('::')[-1]}")
    tr.section("figures the scenarios printed")
    for rep in tr.stats.get("passed", []):
        for line in (getattr(rep, "capstdout", "") or "").splitlines():
            if line.strip():
                tr.write_line(f"{rep.nodeid.split('::')[-1]}: {line}")
    # by the script they run: every app's deploy is the same template
    wanted = {(_kind(name), op) for name, ops in DECLARED.items() for op in ops}
    missing = sorted(wanted - {(_kind(name), op) for name, op in RAN})
    tr.section("declared remote commands never carried out")
    tr.write_line(", ".join(f"{op} {name}" for name, op in missing) if missing else "none")
    done = len(wanted) - len(missing)
    runners = ", ".join(f"{n} by {r}" for r, n in sorted(RUNNER_STEPS.items())) or "none"
    tr.write_line(f"declared operations carried out: {done} of {len(wanted)}, by the Go runner tests/sshrun "
                  f"(steps: {runners})")
    report = Path(".lab") / "e2e-report.json"
    report.parent.mkdir(exist_ok=True)
    report.write_text(json.dumps({"times": TIMES, "never_run": missing, "carried_out": done,
                                  "declared": len(wanted), "runner_steps": RUNNER_STEPS}, indent=1))


def hosts_needed(session: pytest.Session) -> int:
    """The most lab hosts any collected test asks for (``pytest.mark.lab_hosts(n)``)."""
    return max([1, *(m.args[0] for item in session.items for m in item.iter_markers("lab_hosts"))])


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("the end-to-end tier needs root (network namespaces, systemd-nspawn)")
    lab = Lab()
    needed = hosts_needed(request.session)
    reused = lab.is_up() and len(lab.state.hosts) >= needed  # type: ignore[union-attr]
    if reused:  # a running lab (make lab, or tests/lab in this session): fresh trees for its hosts
        for h in lab.state.hosts[:needed]:  # type: ignore[union-attr]
            lab.reset_host(h.name, suite=lab.suite)
    else:
        lab.up(needed)
    yield lab
    if not reused and os.environ.get("LAB_KEEP") != "1":
        lab.down()


@pytest.fixture(scope="session")
def host_name(lab: Lab) -> str:
    return lab.state.hosts[0].name  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def address(lab: Lab) -> str:
    return lab.state.hosts[0].address  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def cran(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RepoServer]:
    repo = build(tmp_path_factory.mktemp("cran"))
    with RepoServer(repo, lab.state.hosts[0].host_end) as server:  # type: ignore[union-attr]
        yield server


@pytest.fixture(scope="session")
def host(lab: Lab, address: str) -> Any:
    key = lab.state.hosts[0].key_path  # type: ignore[union-attr]
    return testinfra.get_host(f"paramiko://root@{address}", ssh_identity_file=key)


@dataclass
class Deployer:
    """`pulumi up --stack local`, without the CLI: program under mocks + test engine."""

    lab: Lab
    cran: RepoServer
    state: Path
    config: dict[str, Any] = field(default_factory=dict)
    last: ProgramRun | None = None
    engine_options: dict[str, Any] = field(default_factory=dict)  # Engine(droplet_outputs=, fresh_host=)

    def engine(self) -> Engine:
        return Engine(self.state, **self.engine_options)

    def base_hosts(self, n: int) -> dict[str, Any]:
        """The local stack over the first n lab hosts (existing-host mode, several hosts)."""
        cfg = self.base()
        cfg.pop("host")
        cfg["hosts"] = [{"address": h.address, "user": "root", "port": 22} for h in self.lab.state.hosts[:n]]  # type: ignore[union-attr]
        return cfg

    def base(self) -> dict[str, Any]:
        h = self.lab.state.hosts[0]  # type: ignore[union-attr]
        cfg = stack_config("local")
        cfg["host"] = {"address": h.address, "user": "root", "port": 22}
        cfg["ssh_private_key_file"] = h.key_path
        cfg["cran_repo"] = self.cran.url
        return cfg

    def up(self, config: dict[str, Any]) -> UpResult:
        self.config = copy.deepcopy(config)
        try:
            self.last, result = self.engine().deploy(config, stack="local")
        except CommandFailedError as e:
            self.last = e.program  # the failed run: what it declared up to the failure
            raise
        for cmd in self.last.commands:  # the operations that run a command (commandController.go)
            ops = DECLARED.setdefault(cmd.name, set())
            if cmd.inputs.get("create"):
                ops.add("create")
            if cmd.inputs.get("update") or cmd.inputs.get("create"):
                ops.add("update")
            if cmd.inputs.get("delete"):
                ops.add("delete")
        record(result)
        return result

    def preview(self, config: dict[str, Any]) -> Plan:
        """`pulumi preview --stack local`: the plan against the current state."""
        return self.engine().preview(config, stack="local")

    def destroy(self) -> UpResult:
        result = self.engine().destroy()
        record(result)
        return result


def assert_previews_only_app(plan: Plan, app: str) -> None:
    """An app's code change previews updates to that app's upload (a new copy: its file's hash
    and remotePath change) and its deploy, and nothing else. Nothing about them is unknown: the
    code travels as a FileAsset the program built, and the deploy's stdin is the env file."""
    changes = plan.changes(None)
    assert changes and set(changes.values()) == {"update"}, changes
    assert set(changes) == {f"{app}-upload", f"{app}-deploy"}, changes
    assert not plan.unknown_inputs.get(f"{app}-deploy") and not plan.unknown_inputs.get(f"{app}-upload"), \
        plan.unknown_inputs


def record(result: UpResult) -> None:
    """What the Go runner carried out (a step with no command to run carries nothing out)."""
    for step in result.steps:
        if step.runner == "none":
            continue
        RUNNER_STEPS[step.runner] = RUNNER_STEPS.get(step.runner, 0) + 1
        if step.type == COMMAND:
            RAN.add((step.name, step.op.replace("replace-", "")))


@pytest.fixture(scope="module")
def deployer(lab: Lab, cran: RepoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployer]:
    d = Deployer(lab=lab, cran=cran, state=tmp_path_factory.mktemp("engine") / "state.json")
    yield d
    # the next module starts from a host without this module's apps
    if Engine(d.state).load():
        d.destroy()


def curl(*args: str, timeout: int = 20) -> subprocess.CompletedProcess[str]:
    """A real HTTP client from outside the host."""
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args], capture_output=True, text=True)


def get_json(url: str, *extra: str) -> Any:
    res = curl("-f", *extra, url)
    assert res.returncode == 0, f"GET {url}: {res.stderr}"
    return json.loads(res.stdout)


def status(url: str, *extra: str) -> int:
    res = curl("-o", "/dev/null", "-w", "%{http_code}", *extra, url)
    return int(res.stdout or 0)

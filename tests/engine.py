"""TEST CODE: carry out the program's remote commands on a test host, the way
the Pulumi engine would, for hosts where the Pulumi CLI is not available.

``Engine.deploy`` runs the real ``__main__.py`` under Pulumi's mocks
(``tests.program.run_program``) and carries out each remote command as the
program registers it, handing the command's real outputs back to the program
(as the engine does: an input computed from another command's stdout gets the
real value; independent commands run in parallel). ``Engine.up`` carries out
a run recorded beforehand. Against the state it kept from the previous run:

* creates resources that are new, in dependency order;
* updates resources whose inputs changed (running ``update`` or, if there is
  none, ``create``), or replaces them when a ``replaceOnChanges`` input changed
  and there is no ``update`` (create the new one first unless
  ``deleteBeforeReplace``, delete the old one after);
* runs nothing for unchanged resources;
* deletes resources that disappeared, in reverse dependency order, running
  their ``delete`` command as recorded in the state.

A command runs as pulumi-command's remote.Command runs it: the command text is
handed to the SSH server (the login shell of ``connection.user`` executes it)
with ``stdin`` on standard input. A failed command stops the run, and the
failed resource keeps its previous state, as with the engine.

It deliberately has no features of its own: anything the program declares that
it cannot carry out (another resource type with remote effects) is an error.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.program import Declared, ProgramRun, run_program

COMMAND = "command:remote:Command"
REMOTE_TYPES = {COMMAND}
NOT_RUN = ("plumber-hosting:", "pulumi:")  # components: nothing to carry out
UNSUPPORTED = ("command:remote:", "command:local:")


class CommandFailedError(RuntimeError):
    def __init__(self, urn: str, op: str, proc: subprocess.CompletedProcess[str]) -> None:
        self.urn, self.op, self.proc = urn, op, proc
        self.program: ProgramRun | None = None  # what was registered up to the failure (Engine.deploy)
        super().__init__(f"{op} of {urn.split('::')[-1]} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


@dataclass
class Step:
    name: str
    op: str  # create | update | replace-create | delete | replace-delete
    seconds: float
    stdout: str = ""
    stderr: str = ""
    started: float = 0.0  # wall clock (time.time()) when the command started


@dataclass
class UpResult:
    steps: list[Step] = field(default_factory=list)

    def ops(self, op: str | None = None) -> list[str]:
        return [s.name for s in self.steps if op is None or s.op == op]

    @property
    def ran(self) -> list[str]:
        return [f"{s.op} {s.name}" for s in self.steps]


def _ssh(conn: dict[str, Any], command: str, stdin: str | None, timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.NamedTemporaryFile("w", delete=False, prefix="engine-key-") as f:
        f.write(conn["privateKey"])
        key = f.name
    os.chmod(key, 0o600)
    try:
        return subprocess.run(
            [
                "ssh", "-i", key, "-p", str(int(conn.get("port", 22))),
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=15",
                f"{conn.get('user', 'root')}@{conn['host']}",
                command,
            ],
            input=stdin or "",
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        os.unlink(key)


class Engine:
    def __init__(self, state_file: Path, timeout: float = 900) -> None:
        self.state_file = state_file
        self.timeout = timeout

    # state: {"resources": [{urn, type, name, inputs, dependencies, outputs}]} in creation order
    def load(self) -> list[dict[str, Any]]:
        if not self.state_file.exists():
            return []
        return json.loads(self.state_file.read_text())["resources"]

    def save(self, resources: list[dict[str, Any]]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"resources": resources}, indent=1))
        os.chmod(tmp, 0o600)
        tmp.replace(self.state_file)

    def _run(self, res: dict[str, Any] | Declared, op: str, text: str | None, result: UpResult) -> dict[str, str]:
        inputs = res.inputs if isinstance(res, Declared) else res["inputs"]
        name = res.name if isinstance(res, Declared) else res["name"]
        urn = res.urn if isinstance(res, Declared) else res["urn"]
        if not text:
            result.steps.append(Step(name, op, 0.0))
            return {"stdout": "", "stderr": ""}
        started, wall = time.monotonic(), time.time()
        proc = _ssh(inputs["connection"], text, inputs.get("stdin"), self.timeout)
        result.steps.append(Step(name, op, time.monotonic() - started, proc.stdout, proc.stderr, wall))
        if proc.returncode != 0:
            raise CommandFailedError(urn, op, proc)
        return {"stdout": proc.stdout, "stderr": proc.stderr}

    def up(self, program: ProgramRun) -> UpResult:
        """Carry out a program run recorded beforehand (its commands saw no real outputs)."""
        session = _Session(self)
        for res in program.resources:  # registration order respects dependencies
            session.step(res)
        return session.finish(program)

    def deploy(self, config: Mapping[str, Any], stack: str) -> tuple[ProgramRun, UpResult]:
        """``pulumi up``: run the program, carrying out each command as it is registered.

        As with the Pulumi engine, a command's outputs (its stdout) are what the
        program sees while it runs, so inputs computed from another command's
        output get the real value; commands that do not depend on each other
        run in parallel.
        """
        session = _Session(self)
        try:
            program = run_program(config, stack=stack, on_register=session.step)
        except Exception:
            if session.failure is not None:  # the program stopped because a command failed
                session.failure.program = ProgramRun(stack=stack, resources=list(session.declared))
                raise session.failure from None
            raise
        return program, session.finish(program)

    def destroy(self) -> UpResult:
        result = UpResult()
        state = self.load()
        for res in reversed(state):
            if res["type"] in REMOTE_TYPES:
                self._run(res, "delete", res["inputs"].get("delete"), result)
        self.save([])
        return result


class _Session:
    """One ``up``: the steps it ran and the state it checkpoints as it goes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.result = UpResult()
        self.old = {r["urn"]: r for r in engine.load()}
        self.state = dict(self.old)  # what the engine would checkpoint, updated step by step
        self.replaced: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.failure: CommandFailedError | None = None
        self.declared: list[Declared] = []  # what the program registered, as it went

    def step(self, res: Declared) -> dict[str, str]:
        """Create, update, replace or keep one resource; returns its outputs."""
        if res.type.startswith(UNSUPPORTED) and res.type not in REMOTE_TYPES:
            raise NotImplementedError(f"the test engine cannot carry out {res.type} ({res.name})")
        engine, result = self.engine, self.result
        with self.lock:
            self.declared.append(res)
        entry = {"urn": res.urn, "type": res.type, "name": res.name, "inputs": res.inputs,
                 "dependencies": res.dependencies, "outputs": {}}
        prev = self.old.get(res.urn)
        try:
            if res.type in REMOTE_TYPES:
                if prev is None:
                    entry["outputs"] = engine._run(res, "create", res.inputs.get("create"), result)
                elif prev["inputs"] == res.inputs:
                    entry["outputs"] = prev["outputs"]
                else:
                    changed = {k for k in set(prev["inputs"]) | set(res.inputs)
                               if prev["inputs"].get(k) != res.inputs.get(k)}
                    replace_keys = {k.split("[")[0] for k in res.replace_on_changes}
                    if changed & replace_keys and not res.inputs.get("update"):
                        if res.delete_before_replace:
                            engine._run(prev, "replace-delete", prev["inputs"].get("delete"), result)
                        else:
                            with self.lock:
                                self.replaced.append(prev)
                        entry["outputs"] = engine._run(res, "replace-create", res.inputs.get("create"), result)
                    else:
                        text = res.inputs.get("update") or res.inputs.get("create")
                        entry["outputs"] = engine._run(res, "update", text, result)
        except CommandFailedError as e:  # its old state stays
            with self.lock:
                self.failure = self.failure or e
            raise
        with self.lock:
            self.state[res.urn] = entry
            engine.save(list(self.state.values()))
        return entry["outputs"]

    def finish(self, program: ProgramRun) -> UpResult:
        """After the program: delete what was replaced or is no longer declared."""
        engine, result = self.engine, self.result
        seen = {r.urn for r in program.resources}
        for prev in reversed(self.replaced):
            engine._run(prev, "replace-delete", prev["inputs"].get("delete"), result)
        for urn in reversed([u for u in self.old if u not in seen]):  # reverse dependency order
            if self.old[urn]["type"] in REMOTE_TYPES:
                engine._run(self.old[urn], "delete", self.old[urn]["inputs"].get("delete"), result)
            del self.state[urn]
            engine.save(list(self.state.values()))
        engine.save([self.state[r.urn] for r in program.resources])
        return result

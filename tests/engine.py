"""TEST CODE: carry out the program's declared resources on lab hosts, the way
the Pulumi engine and pulumi-command v1.2.1 would, for hosts where the Pulumi
CLI is not available. tests/ENGINE.md lists each behaviour mirrored here with
the file and line of the real source it follows.

``Engine.deploy`` runs the real ``__main__.py`` under Pulumi's mocks
(``tests.program.run_program``) and carries out each resource as the program
registers it (a step per resource, as the engine's step generator issues it),
handing the real outputs back to the program. ``Engine.preview`` is ``pulumi
preview``: the plan (an operation per resource), with unknown outputs where the
real preview has them. ``Engine.destroy`` is ``pulumi destroy``.

Commands (``command:remote:Command``) and copies (``command:remote:CopyToRemote``)
are carried out by tests/sshrun, a Go program doing what pulumi-command's
provider does over ``golang.org/x/crypto/ssh`` and ``github.com/pkg/sftp``.
OpenSSH, paramiko and testinfra are only for checking hosts.

A DigitalOcean droplet that is replaced becomes a fresh host at the same address
when the engine is given ``fresh_host`` (the lab resets the host's tree); other
cloud resources have no effect on the lab.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.output import Unknown
from pulumi.runtime import rpc

from tests import sshrun
from tests.program import ROOT, Declared, ProgramRun, run_program

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
DROPLET = "digitalocean:index/droplet:Droplet"
REMOTE_TYPES = {COMMAND, COPY}
UNSUPPORTED = ("command:remote:", "command:local:")
UNKNOWN = rpc.UNKNOWN  # how the mocks carry an unknown output value to the program

# Inputs whose change the provider answers with a replacement (its Diff). pulumi-command:
# schema replaceOnChanges on ``triggers`` (common/inputs.go:10; copy.go CopyToRemoteInputs.Triggers),
# honoured by infer's default Diff (pulumi-go-provider v1.3.0 infer/resource.go:1132-1148, 1226-1229).
# DigitalOcean droplet: the terraform schema's ForceNew attributes (terraform-provider-digitalocean
# digitalocean/droplet/resource_droplet.go ResourceDigitalOceanDroplet; ipv6 only forces one when turned
# off, which this engine does not model).
PROVIDER_REPLACES: dict[str, set[str]] = {
    COMMAND: {"triggers"},
    COPY: {"triggers"},
    DROPLET: {"image", "region", "vpcUuid", "sshKeys", "userData", "monitoring", "dropletAgent"},
}
# The engine's default --parallel: 4 x GOMAXPROCS (pkg/cmd/pulumi/operations/up.go), here 2 cores.
PARALLEL = 4 * (os.cpu_count() or 2)


class CommandFailedError(RuntimeError):
    """A step failed: the provider's error, as the CLI prints it."""

    def __init__(self, urn: str, op: str, error: str, stdout: str = "", stderr: str = "") -> None:
        self.urn, self.op, self.error = urn, op, error
        self.stdout, self.stderr = stdout, stderr
        self.program: ProgramRun | None = None  # what was registered up to the failure (Engine.deploy)
        # the provider's text is "<error>: running <quoted command>:\n<stdout+stderr>" (commandOutputs.go:101):
        # lead with the error and the output, not the command's text
        head, sep, rest = error.partition(': running "')
        output = rest.rsplit('":\n', 1)[-1] if sep else ""
        super().__init__(f"{op} of {urn.split('::')[-1]} failed: {head}" + (f"\n{output[-4000:]}" if output else ""))


class StepCancelledError(RuntimeError):
    """Another step failed first: the engine starts no new step (step_executor.go cancelDueToError)."""


@dataclass
class Step:
    name: str
    op: str  # create | update | replace-create | delete | replace-delete
    seconds: float
    stdout: str = ""
    stderr: str = ""
    started: float = 0.0  # wall clock (time.time()) when the step started
    type: str = COMMAND
    runner: str = "sshrun"  # what carried it out


@dataclass
class UpResult:
    steps: list[Step] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def ops(self, op: str | None = None) -> list[str]:
        return [s.name for s in self.steps if op is None or s.op == op]

    @property
    def ran(self) -> list[str]:
        return [f"{s.op} {s.name}" for s in self.steps]


@dataclass
class Plan:
    """``pulumi preview``: the operation each resource would get (same, create, update, replace, delete)."""

    program: ProgramRun
    ops: dict[str, str]  # resource name -> op, declared resources and those to be deleted
    types: dict[str, str]
    unknown_inputs: dict[str, list[str]]  # resource name -> inputs that are unknown in the preview

    def changes(self, typ: str | None = COMMAND) -> dict[str, str]:
        """Resources (of ``typ``; None: any) whose op is not ``same``."""
        return {n: op for n, op in self.ops.items() if op != "same" and (typ is None or self.types[n] == typ)}


# --------------------------------------------------------------------------
# values: what the state keeps of an input (assets by hash, unknowns marked)
# --------------------------------------------------------------------------


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():  # an archive's hash covers every member's name and bytes
        for p in sorted(path.rglob("*")):
            h.update(str(p.relative_to(path)).encode() + b"\0")
            if p.is_file():
                h.update(p.read_bytes())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def plain(value: Any) -> Any:
    """An input as the state records it: JSON, assets/archives as {kind, path|text, hash}, an
    unknown (preview) as the SDK's UNKNOWN marker."""
    if isinstance(value, Unknown):
        return UNKNOWN
    if isinstance(value, pulumi.StringAsset):
        return {"__asset": "string", "text": value.text, "hash": hashlib.sha256(value.text.encode()).hexdigest()}
    if isinstance(value, (pulumi.FileAsset, pulumi.FileArchive)):
        kind = "file" if isinstance(value, pulumi.FileAsset) else "archive"
        path = Path(value.path) if Path(value.path).is_absolute() else ROOT / value.path  # the program's cwd
        return {"__asset": kind, "path": value.path, "abspath": str(path), "hash": _file_hash(path)}
    if isinstance(value, (pulumi.Asset, pulumi.Archive)):
        raise NotImplementedError(f"the test engine cannot copy a {type(value).__name__}")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _unknown_keys(inputs: Mapping[str, Any]) -> list[str]:
    def has(v: Any) -> bool:
        if isinstance(v, dict):
            return any(has(x) for x in v.values())
        if isinstance(v, list):
            return any(has(x) for x in v)
        return v == UNKNOWN

    return sorted(k for k, v in inputs.items() if has(v))


def _deps(entry: Mapping[str, Any]) -> set[str]:
    """What a resource depends on in the engine's graph: dependencies (with property deps) and parent
    (pkg/resource/graph/dependency_graph.go DependenciesOf)."""
    return set(entry.get("dependencies") or []) | ({entry["parent"]} if entry.get("parent") else set())


# --------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------

FreshHost = Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any]]


class Engine:
    """A stack's state file and the operations on it (up, preview, destroy).

    ``droplet_outputs(declared)`` (optional) gives a droplet's outputs (its address:
    a lab host's); ``fresh_host(old_entry, new_inputs)`` (optional) is called when a
    droplet is replaced: it gives the stack a fresh host and returns the new outputs.
    """

    def __init__(
        self,
        state_file: Path,
        timeout: float = 900,
        *,
        droplet_outputs: Callable[[Declared], Mapping[str, Any]] | None = None,
        fresh_host: FreshHost | None = None,
        parallel: int = PARALLEL,
    ) -> None:
        self.state_file = state_file
        self.timeout = timeout
        self.droplet_outputs = droplet_outputs
        self.fresh_host = fresh_host
        self.parallel = parallel
        self._pending: list[dict[str, str]] = []
        self._previous: dict[str, dict[str, str]] = {}  # urn -> outputs an update starts from
        self._cloud: Any = None  # tests/program.py's MockCloud, when it has one (droplet ids across ups)
        self._pending_lock = threading.Lock()

    # state: {"resources": [{urn, type, name, parent, id, inputs, dependencies, outputs}],
    #         "pending_operations": [{urn, type}]}; resources in dependency order
    def load(self) -> list[dict[str, Any]]:
        if not self.state_file.exists():
            return []
        return json.loads(self.state_file.read_text())["resources"]

    def pending_operations(self) -> list[dict[str, str]]:
        if not self.state_file.exists():
            return []
        return json.loads(self.state_file.read_text()).get("pending_operations", [])

    def save(self, resources: list[dict[str, Any]]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(f".tmp{threading.get_ident()}")
        with self._pending_lock:
            pending = list(self._pending)
        doc: dict[str, Any] = {"resources": resources, "pending_operations": pending}
        if self._cloud is not None:  # the account's droplets: their ids follow replacements
            doc["cloud"] = {"droplets": self._cloud.droplets, "vpcs": self._cloud.vpcs}
        elif self.state_file.exists():
            old = json.loads(self.state_file.read_text()).get("cloud")
            if old:
                doc["cloud"] = old
        tmp.write_text(json.dumps(doc, indent=1))
        os.chmod(tmp, 0o600)
        tmp.replace(self.state_file)

    def _cloud_args(self, preview: bool) -> dict[str, Any]:
        """``cloud=`` for run_program when tests/program.py has a MockCloud: the DigitalOcean account
        as the last up left it (kept in the state file), so a replaced droplet gets a new id."""
        if "cloud" not in inspect.signature(run_program).parameters:
            return {}
        from tests import program

        cloud = program.MockCloud()  # type: ignore[attr-defined]
        saved = json.loads(self.state_file.read_text()).get("cloud", {}) if self.state_file.exists() else {}
        cloud.droplets.update({k: (v[0], v[1]) for k, v in saved.get("droplets", {}).items()})
        cloud.vpcs.update(saved.get("vpcs", {}))
        if not preview:
            self._cloud = cloud
        return {"cloud": copy.deepcopy(cloud) if preview else cloud}

    # ---- carrying out one step (the provider's side) ----

    def _run(self, res: dict[str, Any] | Declared, op: str, text: str | None, result: UpResult) -> dict[str, str]:
        """remote.Command Create/Update/Delete (commandController.go): run ``text`` if there is one.

        ``res`` is the declared resource (create, update) or the state's entry (delete: its old
        inputs and outputs). An update or delete starts from the previous outputs."""
        inputs = res.inputs if isinstance(res, Declared) else res["inputs"]
        name = res.name if isinstance(res, Declared) else res["name"]
        urn = res.urn if isinstance(res, Declared) else res["urn"]
        previous = self._previous.get(urn) if isinstance(res, Declared) and op == "update" else (
            None if isinstance(res, Declared) else res.get("outputs"))
        if not text:  # Create/Update/Delete with no command: nothing runs (commandController.go:48-50, 76-80, 88-90)
            result.steps.append(Step(name, op, 0.0, runner="none"))
            return {"stdout": (previous or {}).get("stdout", ""), "stderr": (previous or {}).get("stderr", "")}
        wall = time.time()
        out = sshrun.run(
            inputs["connection"], text, inputs.get("stdin"),
            environment=inputs.get("environment"),
            add_previous_output_in_env=inputs.get("addPreviousOutputInEnv"),
            logging=inputs.get("logging"),
            previous_stdout=(previous or {}).get("stdout", ""),
            previous_stderr=(previous or {}).get("stderr", ""),
            timeout=self.timeout,
        )
        result.steps.append(Step(name, op, out.seconds, out.stdout, out.stderr, wall))
        if out.error is not None:
            raise CommandFailedError(urn, op, out.error, out.stdout, out.stderr)
        return {"stdout": out.stdout, "stderr": out.stderr}

    def _copy(self, res: Declared, op: str, result: UpResult, prev: Mapping[str, Any] | None) -> dict[str, str]:
        """CopyToRemote Create/Update (copyController.go): Update copies only when the source's hash or
        the remotePath changed."""
        source, remote_path = plain(res.inputs["source"]), res.inputs["remotePath"]
        if prev is not None:
            old = prev["inputs"]
            if old["source"].get("hash") == source.get("hash") and old["remotePath"] == remote_path:
                result.steps.append(Step(res.name, op, 0.0, started=time.time(), type=COPY, runner="none"))
                return {}
        wall = time.time()
        kw = {"text": source["text"]} if source["__asset"] == "string" else {"path": source["abspath"]}
        out = sshrun.copy_to_remote(res.inputs["connection"], remote_path, timeout=self.timeout, **kw)
        result.steps.append(Step(res.name, op, out.seconds, started=wall, type=COPY))
        if out.error is not None:
            raise CommandFailedError(res.urn, op, out.error)
        return {}

    def _delete(self, entry: dict[str, Any], op: str, result: UpResult) -> None:
        """Delete with the state's (old) inputs. CopyToRemote has no Delete: nothing happens on the host
        (it does not implement infer.CustomDelete; infer/resource.go:1484-1498)."""
        if entry["type"] == COMMAND:
            self._run(entry, op, entry["inputs"].get("delete"), result)
        elif entry["type"] == COPY or entry.get("custom"):  # a cloud resource: nothing on the lab
            result.steps.append(Step(entry["name"], op, 0.0, started=time.time(), type=entry["type"], runner="none"))

    # ---- operations ----

    def deploy(self, config: Mapping[str, Any], stack: str) -> tuple[ProgramRun, UpResult]:
        """``pulumi up``: run the program, carrying out each resource's step as it is registered.

        As with the Pulumi engine, a step's outputs are what the program sees, so inputs
        computed from a command's stdout get the real value; independent resources run in
        parallel (the SDK registers them from its thread pool). After the program: the deletes.
        """
        session = _Session(self, preview=False)
        try:
            program = run_program(config, stack=stack, on_register=session.step, **self._cloud_args(False))
        except Exception:
            if session.failure is not None:  # the program stopped because a step failed
                session.failure.program = ProgramRun(stack=stack, resources=list(session.declared))
                raise session.failure from None
            raise
        if session.failure is not None:  # a step failed but the program finished: no delete phase
            session.failure.program = program
            raise session.failure
        return program, session.finish(program)

    def up(self, program: ProgramRun) -> UpResult:
        """Carry out a program run recorded beforehand (its commands saw no real outputs)."""
        session = _Session(self, preview=False)
        for res in program.resources:  # registration order respects dependencies
            session.step(res)
        return session.finish(program)

    def preview(self, config: Mapping[str, Any], stack: str) -> Plan:
        """``pulumi preview``: nothing is carried out; the plan for each resource.

        A resource that will be created or updated gets unknown outputs where the provider
        reports them computed (pulumi-go-provider v1.3.0 infer/resource.go:545-590: on create
        and on any input change, every output that does not mirror an input), so an input
        computed from a probe's stdout is unknown and its apply never runs (sdk output.py)."""
        session = _Session(self, preview=True)
        program = run_program(config, stack=stack, preview=True, on_register=session.step,
                              **self._cloud_args(True))
        seen = {r.urn for r in program.resources}
        ops = dict(session.plan)
        types = {r.name: r.type for r in program.resources}
        for entry in self.load():
            if entry["urn"] not in seen:
                ops[entry["name"]] = "delete"
                types[entry["name"]] = entry["type"]
        return Plan(program, ops, types, session.unknown)

    def destroy(self) -> UpResult:
        """``pulumi destroy``: every resource deleted, dependents first, each antichain in parallel."""
        result = UpResult()
        state = self.load()
        remaining = _delete_in_antichains(self, state, result)
        self.save(remaining)
        return result


def _delete_in_antichains(engine: Engine, entries: list[dict[str, Any]], result: UpResult,
                          keep: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Delete ``entries`` as step_generator.go ScheduleDeletes does: repeatedly the set of condemned
    resources no other condemned resource depends on, each set in parallel; stop at the first failure
    (its resource and everything not yet deleted stay in the state). Returns the state after it.
    An entry marked ``_replaced`` is the old copy of a replaced resource (logged as replace-delete)."""
    remaining = list(entries)
    survivors = list(keep or [])
    lock = threading.Lock()

    def save() -> None:
        engine.save(survivors + remaining)

    failure: list[Exception] = []

    def one(entry: dict[str, Any]) -> None:
        with lock:
            if failure:  # cancelled: no new step
                return
        with engine._pending_lock:
            engine._pending.append({"urn": entry["urn"], "type": "deleting"})
        with lock:
            save()  # the pending operation is on disk before the step runs (as for creates and updates)
        try:
            engine._delete(entry, "replace-delete" if entry.get("_replaced") else "delete", result)
        except Exception as e:  # the first failure cancels the deployment
            with lock:
                failure.append(e)
            return
        finally:
            with engine._pending_lock:
                engine._pending = [p for p in engine._pending if p["urn"] != entry["urn"]]
        with lock:
            remaining.remove(entry)
            save()

    while remaining:
        needed = set().union(*(_deps(e) for e in remaining))
        chain = [e for e in remaining if e["urn"] not in needed]
        with ThreadPoolExecutor(max_workers=engine.parallel) as pool:
            list(pool.map(one, chain))
        if failure:
            save()
            raise failure[0]
    save()
    return survivors


class _Session:
    """One ``up`` (or preview): the steps it ran and the state it checkpoints as it goes."""

    def __init__(self, engine: Engine, preview: bool) -> None:
        self.engine = engine
        self.preview = preview
        self.result = UpResult()
        loaded = engine.load()
        self.old = {r["urn"]: r for r in loaded if not r.get("_replaced")}
        # old copies of replaced resources an interrupted up did not delete yet: deleted in this one's phase
        self.old_replaced = [r for r in loaded if r.get("_replaced")]
        pending = engine.pending_operations()
        if pending and not preview:
            # deployment_executor.go printPendingOperationsWarning: the up goes on; a resource whose
            # create was interrupted is not in the state (created again), an interrupted update or
            # delete left the old state (carried out again)
            self.result.warnings.append(
                f"Attempting to deploy or update resources with {len(pending)} pending operations from "
                "previous deployment.\n" + "".join(f"  * {p['urn']}, interrupted while {p['type']}\n" for p in pending))
            engine._pending = []
        self.state = dict(self.old)  # what the engine would checkpoint, updated step by step
        self.replaced: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.failure: CommandFailedError | None = None
        self.declared: list[Declared] = []  # what the program registered, as it went
        self.plan: dict[str, str] = {}
        self.unknown: dict[str, list[str]] = {}

    def _op(self, res: Declared, prev: dict[str, Any] | None, inputs: dict[str, Any]) -> str:
        if prev is None:
            return "create"
        if prev["inputs"] == inputs:
            return "same"
        changed = {k for k in set(prev["inputs"]) | set(inputs) if prev["inputs"].get(k) != inputs.get(k)}
        # the provider's Diff (replaceOnChanges in its schema) or the resource option replaceOnChanges
        # (step_generator.go applyReplaceOnChanges): either makes it a replacement
        replace_keys = PROVIDER_REPLACES.get(res.type, set()) | {k.split("[")[0].split(".")[0]
                                                                  for k in res.replace_on_changes}
        if "*" in replace_keys or changed & replace_keys:
            return "replace"
        return "update"

    def step(self, res: Declared) -> dict[str, Any]:
        """Create, update, replace or keep one resource; returns its outputs."""
        if res.type.startswith(UNSUPPORTED) and res.type not in REMOTE_TYPES:
            raise NotImplementedError(f"the test engine cannot carry out {res.type} ({res.name})")
        with self.lock:
            self.declared.append(res)
            if self.failure is not None:
                raise StepCancelledError(f"{res.name}: not started, an earlier step failed")
        inputs = plain(res.inputs)
        prev = self.old.get(res.urn)
        op = self._op(res, prev, inputs)
        if self.preview:
            return self._preview_step(res, prev, op, inputs)
        entry = {"urn": res.urn, "type": res.type, "name": res.name, "parent": res.parent, "custom": res.custom,
                 "inputs": inputs, "dependencies": res.dependencies, "outputs": {}}
        engine, result = self.engine, self.result
        if op != "same":
            with engine._pending_lock:
                engine._pending.append({"urn": res.urn, "type": {"create": "creating"}.get(op, "updating")})
            with self.lock:
                engine.save(list(self.state.values()))
        try:
            if op == "same":
                entry["outputs"] = prev["outputs"]  # type: ignore[index]
            elif res.type == COMMAND:
                if op == "create":
                    entry["outputs"] = engine._run(res, "create", res.inputs.get("create"), result)
                elif op == "update":  # Update runs `update`, else `create` (commandController.go:76-79)
                    text = res.inputs.get("update") or res.inputs.get("create")
                    engine._previous[res.urn] = prev["outputs"]  # type: ignore[index]
                    entry["outputs"] = engine._run(res, "update", text, result)
                else:
                    entry["outputs"] = self._replace(res, prev, lambda: engine._run(  # type: ignore[arg-type]
                        res, "replace-create", res.inputs.get("create"), result))
            elif res.type == COPY:
                if op == "replace":
                    entry["outputs"] = self._replace(res, prev, lambda: engine._copy(  # type: ignore[arg-type]
                        res, "replace-create", result, None))
                else:
                    entry["outputs"] = engine._copy(res, op, result, prev if op == "update" else None)
            else:
                entry["outputs"] = self._cloud(res, prev, op)
        except Exception as e:  # its old state stays (infer/resource.go:1463, backend/snapshot.go)
            with self.lock:
                if isinstance(e, CommandFailedError):
                    self.failure = self.failure or e
            raise
        finally:
            with engine._pending_lock:
                engine._pending = [p for p in engine._pending if p["urn"] != res.urn]
        with self.lock:
            self.state[res.urn] = entry
            engine.save(list(self.state.values()))
        return entry["outputs"]

    def _replace(self, res: Declared, prev: dict[str, Any], create: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Create-before-delete unless deleteBeforeReplace; the old delete waits for the delete phase."""
        if res.delete_before_replace:
            self.engine._delete(prev, "replace-delete", self.result)
        else:
            with self.lock:
                self.replaced.append(prev)
        return create()

    def _cloud(self, res: Declared, prev: dict[str, Any] | None, op: str) -> dict[str, Any]:
        """Cloud resources: nothing on the lab, except a droplet's address and its replacement."""
        engine = self.engine
        if op != "same" and res.custom:  # a component has no provider step
            self.result.steps.append(Step(res.name, "replace-create" if op == "replace" else op, 0.0,
                                          type=res.type, runner="none"))
        if res.type != DROPLET or engine.droplet_outputs is None:
            return {}
        if op == "replace" and engine.fresh_host is not None:
            assert prev is not None
            with self.lock:
                self.replaced.append(prev)
            return dict(engine.fresh_host(prev, plain(res.inputs)))
        if op == "same" or op == "update":
            return dict(prev["outputs"]) if prev and prev.get("outputs") else dict(engine.droplet_outputs(res))
        return dict(engine.droplet_outputs(res))

    def _preview_step(self, res: Declared, prev: dict[str, Any] | None, op: str, inputs: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.plan[res.name] = op
            unknown = _unknown_keys(inputs)
            if unknown:
                self.unknown[res.name] = unknown
        if op == "same":
            return dict(prev["outputs"]) if prev else {}  # type: ignore[index]
        if res.type == COMMAND:  # every output that does not mirror an input is computed
            return {"stdout": UNKNOWN, "stderr": UNKNOWN}
        if res.type == DROPLET and self.engine.droplet_outputs is not None:
            if op == "update" and prev is not None:
                return dict(prev["outputs"])
            return {k: UNKNOWN for k in self.engine.droplet_outputs(res)}
        return {}

    def finish(self, program: ProgramRun) -> UpResult:
        """After the program: the delete phase (deployment_executor.go), replaced olds and removed resources."""
        engine = self.engine
        seen = {r.urn for r in program.resources}
        removed = [self.old[u] for u in self.old if u not in seen]
        keep = [self.state[r.urn] for r in program.resources if r.urn in self.state]
        condemned = [{**p, "_replaced": True} for p in self.replaced + self.old_replaced] + removed
        _delete_in_antichains(engine, condemned, self.result, keep=keep)
        engine.save(keep)
        return self.result


def main(argv: list[str]) -> int:
    """``python -m tests.engine up STATE CONFIG.json STACK``: one ``pulumi up`` in its own process
    (the fault tests kill it, as a cancelled CI job kills the CLI and its provider)."""
    if len(argv) != 4 or argv[0] != "up":
        print("usage: python -m tests.engine up STATE CONFIG.json STACK")
        return 2
    _, state, config, stack = argv
    try:
        Engine(Path(state)).deploy(json.loads(Path(config).read_text()), stack=stack)
    except CommandFailedError as e:
        print(e)
        return 1
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))

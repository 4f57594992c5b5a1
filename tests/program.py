"""Run the real ``__main__.py`` under Pulumi's mocks and record what it declares.

Used by the unit tests, the static checks, the host harness and the
benchmarks: the same program a user runs with ``pulumi up``, the same stack
files, with the Pulumi engine replaced by a recording mock monitor.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import runpy
import sys
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "plumber-hosting"
SECRET_SIG = rpc._special_secret_sig  # type: ignore[attr-defined]


@dataclass
class Declared:
    """One resource as the program registered it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    secret_inputs: set[str]
    dependencies: list[str]
    delete_before_replace: bool
    replace_on_changes: list[str]
    protect: bool = False
    aliases: list[tuple[str, str]] = field(default_factory=list)  # (old name, old parent URN) per alias
    ignore_changes: list[str] = field(default_factory=list)
    retain_on_delete: bool = False


@dataclass
class ProgramRun:
    stack: str
    resources: list[Declared] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    # what each component passed to register_outputs, by URN (what a policy pack sees as its props)
    component_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Declared]:
        return [r for r in self.resources if r.type == typ]

    def named(self, name: str) -> Declared:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"{len(matches)} resources named {name!r}"
        return matches[0]

    @property
    def commands(self) -> list[Declared]:
        return self.of_type("command:remote:Command")

    def summary(self) -> list[tuple[str, str]]:
        return [(r.type, r.name) for r in self.resources]

    def upstream(self, name: str) -> set[str]:
        """The names of every resource `name` waits for, directly or through others (dependencies, parents)."""
        by_urn = {x.urn: x for x in self.resources}
        seen: set[str] = set()
        todo = list(self.named(name).dependencies)
        while todo:
            urn = todo.pop()
            if urn in seen or urn not in by_urn:
                continue
            seen.add(urn)
            todo.extend(by_urn[urn].dependencies)
            todo.append(by_urn[urn].parent)
        return {by_urn[u].name for u in seen}


def _secret_keys(struct: Any) -> set[str]:
    raw = json_format.MessageToDict(struct)
    out: set[str] = set()

    def walk(key: str, value: Any) -> bool:
        if isinstance(value, dict):
            if value.get(rpc._special_sig_key) == SECRET_SIG:  # type: ignore[attr-defined]
                return True
            return any(walk(key, v) for v in value.values())
        if isinstance(value, list):
            return any(walk(key, v) for v in value)
        return False

    for k, v in raw.items():
        if walk(k, v):
            out.add(k)
    return out


FAKE_STATE: dict[str, dict[str, Any]] = {
    "digitalocean:index/droplet:Droplet": {"ipv4_address": "203.0.113.10", "ipv6_address": "2001:db8::10"},
    "digitalocean:index/reservedIp:ReservedIp": {"ip_address": "198.51.100.7"},
    "digitalocean:index/loadBalancer:LoadBalancer": {"ip": "192.0.2.80", "ipv6": "2001:db8::80"},
    "command:remote:Command": {"stdout": "", "stderr": ""},
}
# DigitalOcean URNs (for projects): type -> (output, kind)
URN_OUTPUTS: dict[str, tuple[str, str]] = {
    "digitalocean:index/droplet:Droplet": ("droplet_urn", "droplet"),
    "digitalocean:index/reservedIp:ReservedIp": ("reserved_ip_urn", "reservedip"),
    "digitalocean:index/loadBalancer:LoadBalancer": ("load_balancer_urn", "loadbalancer"),
}


def _unwrap(value: Any) -> Any:
    """Plain values: secrets unwrapped (which inputs were secret is kept apart)."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == SECRET_SIG:  # type: ignore[attr-defined]
            return _unwrap(value["value"])
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


# Called as each resource is registered; what it returns (a command's stdout
# and stderr, say) is what the program sees as the resource's outputs.
RegisterHook = Callable[["Declared"], dict[str, str]]


# Droplet inputs whose change makes the provider create a new droplet
# (ForceNew in digitalocean/droplet/resource_droplet.go): a new id, a blank disk.
DROPLET_FORCE_NEW = ("image", "region", "sshKeys", "userData", "monitoring", "dropletAgent", "vpcUuid")


# The API's answers the mock account gives where the real one refuses (quoted from DigitalOcean or the provider).
TOKEN_REFUSED = (
    "rpc error: code = Unknown desc = invocation of {tok} returned an error: GET https://api.digitalocean.com/v2/"
    "{what}?page=1&per_page=200: 401 (request \"0b5c1e4e\") Unable to authenticate you"
)
DEFAULT_VPC_DELETE = (
    "Error deleting VPC: DELETE https://api.digitalocean.com/v2/vpcs/{id}: 403 Can not delete default VPC "
    "(digitalocean/vpc/resource_vpc.go retries 403 for 2 minutes, then fails)"
)


def _scope(project: str | None = None, stack: str | None = None) -> str:
    """Whose a resource is on the mock account: the stack, or ``<project>/<stack>`` for another project."""
    project = project if project is not None else pulumi.get_project()
    stack = stack if stack is not None else pulumi.get_stack()
    return stack if project == PROJECT else f"{project}/{stack}"


def _stable_id(*parts: str) -> str:
    return str(100000 + zlib.crc32("::".join(parts).encode()) % 900000)


@dataclass
class MockCloud:
    """A DigitalOcean account as the program sees it across several runs (and several stacks).

    ``ssh_keys`` is what the account already holds (what ``getSshKeys``
    answers); a key a run uploads (an SshKey resource) joins it, a second upload
    of a key already there is refused (422, as the API does), and a key a stack
    stops declaring is deleted at the end of its `up` (``deleted_keys``), as the
    engine deletes a resource that left the program. ``droplets`` remembers each
    droplet resource's last inputs and id: a run that changes a replace-forcing
    input gets a new droplet id, as a real ``pulumi up`` would, and an unchanged
    or in-place change keeps it (an input in ``ignore_changes`` keeps its old
    value, as the engine does). VPC names are unique per account; the first VPC
    of a region becomes its default, which cannot be deleted (``destroy``);
    ``new_account`` starts with no default VPC in any region, else every region
    has DigitalOcean's own ``default-<region>``. ``token_refused``: every
    DigitalOcean read fails with the API's 401. Each stack's last outputs are
    what ``pulumi:pulumi:readStackOutputs`` answers for it.
    Pass the same instance to successive ``run_program`` calls.
    """

    ssh_keys: list[dict[str, Any]] = field(default_factory=list)
    droplets: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # "<stack>::<name>" -> (id, inputs)
    replaced: list[str] = field(default_factory=list)  # "<stack>::<name>" of each replacement, in order
    vpcs: dict[str, str] = field(default_factory=dict)  # id -> name; a droplet made without vpc_uuid is in default-<region>
    new_account: bool = False
    token_refused: bool = False
    default_vpcs: dict[str, str] = field(default_factory=dict)  # region -> id of its default VPC
    vpc_regions: dict[str, str] = field(default_factory=dict)  # id -> region
    stack_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # stack -> its last up's outputs
    state: dict[str, list[Declared]] = field(default_factory=dict)  # stack -> what its last up declared
    deleted_keys: list[dict[str, Any]] = field(default_factory=list)
    vpc_ids: dict[str, str] = field(default_factory=dict)  # "<stack>::<resource>" -> id while in the stack's state
    projects: dict[str, str] = field(default_factory=dict)  # "<stack>::<resource>" -> name (unique per account)
    tags: dict[str, set[str]] = field(default_factory=dict)  # tag -> the stacks whose program declares it

    # ---- droplets
    def droplet_id(self, stack: str, name: str, inputs: dict[str, Any], ignore: list[str] | None = None) -> str:
        base = 100000 + zlib.crc32(f"digitalocean:index/droplet:Droplet::{name}".encode()) % 900000
        key = f"{stack}::{name}"
        old = self.droplets.get(key)
        inputs = dict(inputs)
        if old is not None:
            for prop in ignore or []:  # the engine sets an ignored input back to its old value
                if prop in old[1]:
                    inputs[prop] = old[1][prop]
                else:
                    inputs.pop(prop, None)
        if old is None:
            rid = str(base)
        else:
            rid, before = old
            if _replaces_droplet(before, inputs):
                self.replaced.append(key)
                rid = str(int(rid) + 1)
        kept = dict(inputs)
        if "vpcUuid" not in inputs and old is not None and "vpcUuid" in old[1]:
            kept["vpcUuid"] = old[1]["vpcUuid"]  # Optional+Computed: leaving it out keeps the old value
        self.droplets[key] = (rid, kept)
        return rid

    def find_droplets(self, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What getDroplets answers: the droplets on the account as the API reads them back."""
        live = [
            {"id": int(rid), "name": i["name"], "region": i["region"], "image": i["image"], "size": i["size"],
             "monitoring": bool(i.get("monitoring")), "ipv6": bool(i.get("ipv6")), "tags": list(i.get("tags") or []),
             "vpcUuid": i.get("vpcUuid") or self.region_default(i["region"], create=True),
             "ipv4Address": i.get("ipv4Address", "")}
            for rid, i in self.droplets.values()
        ]
        for f in filters or []:
            values = [str(v) for v in f["values"]]
            if f["key"] == "tags":  # a set attribute matches when any element does (datalist/values.go)
                live = [d for d in live if any(t in values for t in d["tags"])]
            else:
                live = [d for d in live if str(d.get(f["key"])) in values]
        return live

    # ---- VPCs
    def region_default(self, region: str, *, create: bool = False) -> str | None:
        """The region's default VPC id; DigitalOcean makes ``default-<region>`` when something needs one."""
        if region not in self.default_vpcs and (create or not self.new_account):
            vid = f"default-{region}"
            self.default_vpcs[region] = vid
            self.vpcs.setdefault(vid, vid)
            self.vpc_regions[vid] = region
        return self.default_vpcs.get(region)

    def make_vpc(self, stack: str, resource: str, name: str, region: str) -> str:
        rid = self.vpc_ids.get(f"{stack}::{resource}") or _stable_id(stack, "digitalocean:index/vpc:Vpc", resource)
        while f"{stack}::{resource}" not in self.vpc_ids and rid in self.default_vpcs.values() and self.vpcs[rid] != name:
            rid = str(int(rid) + 1)  # a new VPC: a destroy left the old one on the account as the region's default
        self.vpc_ids[f"{stack}::{resource}"] = rid
        taken = [vid for vid, n in self.vpcs.items() if n == name and vid != rid]
        if taken:
            raise RuntimeError(f"Error creating VPC: POST https://api.digitalocean.com/v2/vpcs: 422 "
                               f"name '{name}' is already in use (VPC names are unique per account)")
        if rid not in self.vpcs and region not in self.default_vpcs and self.new_account:
            self.default_vpcs[region] = rid  # the first VPC of a region becomes its default
        self.vpcs[rid] = name
        self.vpc_regions[rid] = region
        return rid

    # ---- projects and tags
    def make_project(self, stack: str, resource: str, name: str) -> None:
        key = f"{stack}::{resource}"
        if any(n == name and k != key for k, n in self.projects.items()):
            raise RuntimeError(f"Error creating Project: POST https://api.digitalocean.com/v2/projects: 409 "
                               f"name '{name}' is already in use (project names are unique per account)")
        self.projects[key] = name

    def declare_tag(self, stack: str, name: str) -> None:
        """A tag is account-wide: a second stack declaring it would share its load balancer's droplets."""
        self.tags.setdefault(name, set()).add(stack)

    # ---- SSH keys
    def upload_key(self, stack: str, resource: str, name: str, public_key: str, fingerprint: str) -> str:
        rid = _stable_id(stack, "digitalocean:index/sshKey:SshKey", resource)
        for k in self.ssh_keys:
            if str(k["id"]) == rid:
                k["name"] = name  # `name` updates in place
                return rid
            if k["fingerprint"] == fingerprint:
                raise RuntimeError("Error creating SSH Key: POST https://api.digitalocean.com/v2/account/keys: "
                                   "422 SSH Key is already in use on your account")
        self.ssh_keys.append({"id": int(rid), "name": name, "fingerprint": fingerprint, "publicKey": public_key})
        return rid

    def find_ssh_keys(self, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        keys = self.ssh_keys
        for f in filters or []:
            keys = [k for k in keys if str(k.get(f["key"])) in [str(v) for v in f["values"]]]
        return keys

    # ---- the end of an `up`, and `pulumi destroy`
    def finish_up(self, stack: str, run: ProgramRun) -> None:
        """What the engine does after the program: resources that left it are deleted; outputs are saved."""
        now = {r.urn for r in run.resources}
        for r in self.state.get(stack, []):
            if r.urn not in now and r.type == "digitalocean:index/sshKey:SshKey" and not r.retain_on_delete:
                self._delete_key(_stable_id(stack, r.type, r.name))
        self.state[stack] = list(run.resources)
        self.stack_outputs[stack] = dict(run.outputs)

    def _delete_key(self, rid: str) -> None:
        for k in list(self.ssh_keys):
            if str(k["id"]) == rid:
                self.ssh_keys.remove(k)
                self.deleted_keys.append(k)

    def destroy(self, stack: str) -> list[str]:
        """``pulumi destroy``: deletes what the stack's last `up` declared; the errors the API gives."""
        errors: list[str] = []
        for r in reversed(self.state.get(stack, [])):
            if not r.custom:
                continue
            rid = _stable_id(stack, r.type, r.name)
            if r.type == "digitalocean:index/vpc:Vpc":
                rid = self.vpc_ids.get(f"{stack}::{r.name}", rid)
                if r.retain_on_delete:
                    self.vpc_ids.pop(f"{stack}::{r.name}", None)
                    continue  # Pulumi forgets it and leaves it on the account
                if rid in self.default_vpcs.values():
                    errors.append(DEFAULT_VPC_DELETE.format(id=rid))
                    continue
                self.vpcs.pop(rid, None)
                self.vpc_regions.pop(rid, None)
                self.vpc_ids.pop(f"{stack}::{r.name}", None)
            elif r.type == "digitalocean:index/droplet:Droplet":
                self.droplets.pop(f"{stack}::{r.name}", None)
            elif r.type == "digitalocean:index/sshKey:SshKey" and not r.retain_on_delete:
                self._delete_key(rid)
        if not errors:
            self.state.pop(stack, None)
            self.stack_outputs.pop(stack, None)
        return errors


def _replaces_droplet(before: dict[str, Any], after: dict[str, Any]) -> bool:
    for key in DROPLET_FORCE_NEW:
        old, new = before.get(key), after.get(key)
        if key == "vpcUuid" and new is None:
            continue  # Optional+Computed
        if key == "sshKeys":
            old, new = sorted(old or []), sorted(new or [])
        if key in ("monitoring", "dropletAgent"):
            old, new = bool(old), bool(new)
        if old != new:
            return True
    # ipv6 true -> false replaces; false -> true is in place (CustomizeDiff, resource_droplet.go)
    return bool(before.get("ipv6")) and not after.get("ipv6")


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self, cloud: MockCloud | None = None) -> None:
        self.pending = threading.local()  # outputs the hook gave for the resource being registered
        self.options = threading.local()  # the Declared being registered (its options)
        self.cloud = cloud if cloud is not None else MockCloud()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        state.update(FAKE_STATE.get(args.typ, {}))
        state.update(getattr(self.pending, "outputs", None) or {})
        self.pending.outputs = None
        # DigitalOcean ids are numbers; these are stable per resource, so two runs of
        # the same program declare the same inputs whatever order resources register in.
        rid = str(100000 + zlib.crc32(f"{args.typ}::{args.name}".encode()) % 900000)
        if args.typ == "digitalocean:index/loadBalancer:LoadBalancer":
            rid = f"lb-uuid-{args.name}"  # load balancers have UUIDs; this one names whose it is
        if args.typ == "digitalocean:index/droplet:Droplet":
            # replica i (server@i-droplet) gets 203.0.113.(9+i); the first keeps .10
            replica = int(args.name.split("@")[1].split("-")[0]) if "@" in args.name else 1
            state["ipv4_address"] = f"203.0.113.{9 + replica}"
            state["ipv6_address"] = f"2001:db8::{9 + replica}"
            declared = getattr(self.options, "declared", None)
            ignore = declared.ignore_changes if declared is not None and declared.name == args.name else []
            rid = self.cloud.droplet_id(_scope(), args.name, dict(args.inputs), ignore)
            self.cloud.droplets[f"{_scope()}::{args.name}"][1]["ipv4Address"] = state["ipv4_address"]
        if args.typ == "digitalocean:index/vpc:Vpc":  # VPC ids are account-wide: one per stack
            rid = self.cloud.make_vpc(_scope(), args.name, str(args.inputs.get("name")),
                                      str(args.inputs.get("region")))
        if args.typ == "digitalocean:index/project:Project":
            self.cloud.make_project(_scope(), args.name, str(args.inputs.get("name")))
        if args.typ == "digitalocean:index/tag:Tag":
            self.cloud.declare_tag(_scope(), str(args.inputs.get("name")))
        if args.typ == "digitalocean:index/sshKey:SshKey":  # DigitalOcean's MD5 fingerprint of the key
            digest = hashlib.md5(base64.b64decode(str(args.inputs["publicKey"]).split()[1])).hexdigest()
            state["fingerprint"] = ":".join(digest[i : i + 2] for i in range(0, 32, 2))
            rid = _stable_id(_scope(), args.typ, args.name)  # key ids are account-wide
            if not pulumi.runtime.is_dry_run():
                self.cloud.upload_key(_scope(), args.name, str(args.inputs["name"]),
                                      str(args.inputs["publicKey"]), state["fingerprint"])
        urn_kind = URN_OUTPUTS.get(args.typ)
        if urn_kind:
            state[urn_kind[0]] = f"do:{urn_kind[1]}:{state.get('ip_address', rid)}"
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "pulumi:pulumi:readStackOutputs":  # the engine's builtin: a stack's last outputs
            name = str(args.args["name"])
            _org, project, stack = name.split("/")
            outputs = self.cloud.stack_outputs.get(_scope(project, stack), {})
            return {"name": name, "outputs": outputs, "secretOutputNames": []}, []
        if self.cloud.token_refused and args.token.startswith("digitalocean:"):
            what = {"getSshKeys": "account/keys", "getDroplets": "droplets", "getVpc": "vpcs"}
            path = what.get(args.token.rsplit(":", 1)[-1], "account")
            return {}, [("", TOKEN_REFUSED.format(tok=args.token, what=path))]
        if args.token == "digitalocean:index/getSshKeys:getSshKeys":
            keys = self.cloud.find_ssh_keys(args.args.get("filters") or [])
            return {"id": "ssh-keys", "sshKeys": keys, "filters": args.args.get("filters")}, []
        if args.token == "digitalocean:index/getDroplets:getDroplets":
            return {"id": "droplets", "droplets": self.cloud.find_droplets(args.args.get("filters") or [])}, []
        if args.token == "digitalocean:index/getVpc:getVpc":
            if args.args.get("region"):  # the region's default (digitalocean/vpc/datasource_vpc.go:143-155)
                region = str(args.args["region"])
                vid = self.cloud.region_default(region)
                if vid is None:
                    return {}, [("", f"Error retrieving VPC: unable to find default VPC in {region} region")]
            else:
                vid = str(args.args["id"])
            name = self.cloud.vpcs.get(vid) or (vid if vid.startswith("default-") else None)
            if name is None:
                raise RuntimeError(f"no VPC {vid}")
            return {"id": vid, "name": name, "region": self.cloud.vpc_regions.get(vid, ""),
                    "default": vid in self.cloud.default_vpcs.values()}, []
        return {}, []


class _Monitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: _Mocks, run: ProgramRun, on_register: RegisterHook | None = None) -> None:
        super().__init__(mocks)
        self.run = run
        self.stack_urn = ""
        self.on_register = on_register
        self.lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC name
        if request.type == "pulumi:pulumi:Stack":
            response = super().RegisterResource(request)
            self.stack_urn = response.urn
            return response
        declared = Declared(
            urn=self.make_urn(request.parent, request.type, request.name),
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=bool(request.custom),
            inputs=_unwrap(rpc.deserialize_properties(request.object)),
            secret_inputs=_secret_keys(request.object),
            dependencies=list(request.dependencies),
            delete_before_replace=bool(request.deleteBeforeReplace),
            replace_on_changes=list(request.replaceOnChanges),
            protect=bool(request.protect),
            aliases=[(a.spec.name, a.spec.parentUrn) for a in request.aliases],
            ignore_changes=list(request.ignoreChanges),
            retain_on_delete=bool(request.retainOnDelete),
        )
        with self.lock:
            self.run.resources.append(declared)
        # what the mock account needs of the options (new_resource sees only the inputs)
        self.mocks.options.declared = declared  # type: ignore[attr-defined]
        if self.on_register is not None:
            # as the engine does: the step runs now, its outputs go back to the program
            self.mocks.pending.outputs = self.on_register(declared)  # type: ignore[attr-defined]
        return super().RegisterResource(request)

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC name
        outputs = _unwrap(rpc.deserialize_properties(request.outputs))
        with self.lock:
            self.run.component_outputs[request.urn] = outputs
        return super().RegisterResourceOutputs(request)


class _Logger:
    def __init__(self, run: ProgramRun) -> None:
        self.run = run

    def warning(self, msg: str, *a: Any, **k: Any) -> None:
        self.run.warnings.append(msg)

    def debug(self, *a: Any, **k: Any) -> None: ...
    def info(self, *a: Any, **k: Any) -> None: ...
    def error(self, *a: Any, **k: Any) -> None: ...


def stack_config(stack: str) -> dict[str, Any]:
    """The ``plumber-hosting:`` keys of ``stacks/Pulumi.<stack>.yaml``, as YAML values."""
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()) or {}
    prefix = PROJECT + ":"
    return {k[len(prefix) :]: v for k, v in (doc.get("config") or {}).items() if k.startswith(prefix)}


def _to_pulumi(value: Any) -> str:
    """Config values as the CLI hands them to a program: text, objects as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_program(
    config: Mapping[str, Any],
    *,
    stack: str = "dev",
    secret_keys: tuple[str, ...] = ("ssh_private_key",),
    preview: bool = False,
    on_register: RegisterHook | None = None,
    cloud: MockCloud | None = None,
    project: str = PROJECT,
) -> ProgramRun:
    """Run ``__main__.py`` once with ``config`` (keys without the namespace).

    ``on_register``, if given, is called as each resource is registered and
    its result is what the program sees as the resource's outputs (the test
    engine carries a command out there, as the Pulumi engine would).
    ``cloud`` is the DigitalOcean account the run sees (empty if not given);
    the same one across runs makes droplet ids follow replacements. ``project``:
    the Pulumi project's name (another project on the same account).
    """
    run = ProgramRun(stack=stack)
    mocks = _Mocks(cloud)
    monitor = _Monitor(mocks, run, on_register)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    root = pulumi.runtime.settings.get_root_resource()
    if root is not None and isinstance(getattr(root, "outputs", None), dict):
        root.outputs.clear()  # the root outlives a run: a key the last run exported must not linger
    pulumi.runtime.settings.SETTINGS.engine.logger = _Logger(run)  # type: ignore[attr-defined]
    flat = {f"{PROJECT}:{k}": _to_pulumi(v) for k, v in config.items()}
    pulumi.runtime.set_all_config(flat, [f"{PROJECT}:{k}" for k in secret_keys if k in config])
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    settings = pulumi.runtime.settings.SETTINGS
    settings.rpc_manager.clear()  # type: ignore[attr-defined]
    settings.outputs.clear()  # type: ignore[attr-defined]
    with _cwd(ROOT):
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")))
    root = pulumi.runtime.settings.get_root_resource()
    exported: dict[str, Any] = dict(getattr(root, "outputs", {}) or {})
    for key, value in exported.items():
        out = pulumi.Output.from_input(value)
        run.outputs[key] = _sync_await(out.future())
        if _sync_await(out.is_secret()):
            run.secret_outputs.add(key)
    if not preview:  # the engine's end of an `up`: state and outputs saved, dropped resources deleted
        mocks.cloud.finish_up(_scope(project, stack), run)
    return run


def run_stack(stack: str, overrides: Mapping[str, Any] | None = None, **kw: Any) -> ProgramRun:
    config = {**stack_config(stack), **(overrides or {})}
    return run_program(config, stack=stack, **kw)

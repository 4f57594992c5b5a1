"""What the DigitalOcean account, and the stack's own state, already hold: read before anything is declared.

Every live read of the program is here (the provider's data sources, run as
invokes in `pulumi preview` and `up`, not in destroy or refresh); the rules
applied to what they answer are in components/droplet_rules.py.

- The stack's own droplets: ``getDroplets`` filtered by the ``stack-<stack>`` tag
  every droplet of the stack carries (and, when a droplet has one, the
  ``project-<project>`` tag), never by name alone: another stack or project with
  the same ``droplet_name`` has droplets of the same names.
- The region's default VPC (``getVpc`` with ``region``): the first VPC made in a
  region becomes its default, which DigitalOcean refuses to delete.
- An SSH public key can be on an account only once: DigitalOcean answers a
  second upload of the same key with 422 "SSH Key is already in use on your
  account". So the stack's ``ssh_public_key`` is looked up by fingerprint
  (``getSshKeys``, digitalocean/sshkey/datasource_ssh_keys.go) and uploaded
  only when no key on the account matches, or the match is the key this stack
  uploaded, recognised by the id its last `up` recorded (below), not by name.
- The ids the stack recorded (``owned_ids``, a stack output), read back from its
  own state with the engine's ``pulumi:pulumi:readStackOutputs`` invoke.

Without a working DIGITALOCEAN_TOKEN (or network) every read fails; the program
stops with a config-style error naming DIGITALOCEAN_TOKEN, not the provider's raw
invoke error (the provider takes the token from DIGITALOCEAN_TOKEN or
DIGITALOCEAN_ACCESS_TOKEN, digitalocean/provider.go:53-54, and does not check it
when configured, providerConfigure :288-306; the first API call does).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pulumi
import pulumi_digitalocean as do

from components.config import ConfigError, StackSpec, format_problems
from components.droplet_rules import (
    LiveDroplet,
    LiveStack,
    StackRecord,
    Vpc,
    lb_tag_name,
    legacy_vpc_name,
    project_tag,
    region_default_name,
    replacement_problems,
    stack_tag,
    vpc_name,
)

T = TypeVar("T")
TOKEN = "DIGITALOCEAN_TOKEN"
RECORD_OUTPUT = "owned_ids"  # the stack output holding the ids the stack owns on the account
# The provider's answer when a region has no default VPC (digitalocean/vpc/datasource_vpc.go:143-155).
NO_DEFAULT_VPC = "unable to find default VPC in"


def token_problem(what: str, exc: BaseException) -> str:
    """The config-style message for a read the API refused (401/403) or could not answer."""
    detail = " ".join(str(exc).split())
    if len(detail) > 300:
        detail = detail[:300] + "..."
    refused = any(s in detail for s in ("401", "403", "Unable to authenticate", "Forbidden", "unauthorized"))
    why = (
        "DigitalOcean refused the token"
        if refused
        else "the DigitalOcean API could not be reached or refused the request"
    )
    return (
        "invalid stack config:\n"
        f"  {TOKEN}: {why} while reading {what} (a droplet stack reads the account in every preview and up). "
        f"Set {TOKEN} in the environment (or `pulumi config set --secret digitalocean:token ...`) to a "
        f"DigitalOcean API token with read and write scope. The provider said: {detail}"
    )


def _read(what: str, read: Callable[[], T]) -> T:
    try:
        return read()
    except ConfigError:
        raise
    except Exception as exc:  # the invoke's error, whatever the provider raised
        raise ConfigError(token_problem(what, exc)) from None


# ------------------------------------------------------- the stack's own record


def stack_record() -> StackRecord:
    """The ids the stack's last `up` exported as ``owned_ids``, read from its own state.

    The engine lets invokes of package ``pulumi`` through without a default provider
    (pulumi/pulumi pkg/resource/deploy/default_providers.go:266-269; the Python SDK
    sends its own ``pulumi:pulumi:getResource`` the same way,
    sdk/python/lib/pulumi/runtime/resource.py:587) and routes them to its builtin
    provider (pkg/resource/deploy/providers/registry.go:375-376), whose
    ``pulumi:pulumi:readStackOutputs`` reads a stack's outputs through the backend
    (pkg/resource/deploy/builtins.go:339-343, readStackReference :371-419;
    pkg/backend/backend.go:399-428). With the file (diy) backend, GetStack makes a
    new stack object on each call (pkg/backend/diy/backend.go:909-924) and its
    outputs are read from the checkpoint file (pkg/backend/diy/state.go:175-196;
    a stack with no checkpoint yet answers an empty map, :188-190). A diy stack is
    named ``organization/<project>/<stack>`` (pkg/backend/diy/store.go:138-174).
    In a preview nothing is written, so the read gives the last `up`'s outputs;
    during an `up` the root stack resource is a Same step, which keeps its old
    outputs (pkg/resource/deploy/step.go:177-179) until the program registers the
    new ones at its end, after every read here. ResourceMonitor.Invoke calls the
    provider in a preview as in an update (pkg/resource/deploy/source_eval.go:1156-1164).
    Line numbers are from pulumi 1b5949891b (v3.259.0+14, the newest stored copy;
    the CLI pinned is 3.272.0). Under mocks, tests/program.py answers the invoke
    with the outputs of the stack's last run.
    """
    name = f"{pulumi.get_organization() or 'organization'}/{pulumi.get_project()}/{pulumi.get_stack()}"
    try:
        result = pulumi.runtime.invoke("pulumi:pulumi:readStackOutputs", {"name": name})
        outputs: dict[str, Any] = dict((result.value or {}).get("outputs") or {})
    except Exception as exc:  # a backend that cannot read itself: fall back to names
        pulumi.log.warn(f"could not read this stack's own outputs ({exc}); the stack's SSH key and VPC are "
                        "recognised by name instead")
        return StackRecord(kind="legacy")
    if not outputs:
        return StackRecord(kind="new")
    owned = outputs.get(RECORD_OUTPUT)
    if not isinstance(owned, dict):
        return StackRecord(kind="legacy")
    return StackRecord(
        kind="recorded",
        ssh_key=str(owned.get("ssh_key") or ""),
        vpc=str(owned.get("vpc") or ""),
        region_default=str(owned.get("region_default") or ""),
        lb_tag=str(owned.get("lb_tag") or ""),
    )


def owned_ids(
    ssh_key: pulumi.Resource | None,
    vpc: pulumi.Resource | None,
    region_default: pulumi.Resource | None,
    lb_tag: pulumi.Input[str] = "",
) -> dict[str, pulumi.Input[str]]:
    """What the stack exports as ``owned_ids`` for its next run's ``stack_record``."""

    def rid(r: pulumi.Resource | None) -> pulumi.Input[str]:
        return r.id if isinstance(r, pulumi.CustomResource) else ""

    return {"ssh_key": rid(ssh_key), "vpc": rid(vpc), "region_default": rid(region_default), "lb_tag": lb_tag}


# ------------------------------------------------------------- SSH keys


def fingerprint(public_key: str) -> str:
    """DigitalOcean's fingerprint of an OpenSSH public key: MD5 of the key blob, hex pairs."""
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob).hexdigest()  # the format DigitalOcean names keys by
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@dataclass(frozen=True)
class KeyOnAccount:
    fingerprint: str
    upload: bool  # declare the SshKey resource (absent from the account, or uploaded by this stack)
    name: str  # the name the stack's own key carries


def ssh_key_on_account(public_key: str, droplet_name: str, record: StackRecord | None = None) -> KeyOnAccount:
    """Whether the stack must upload its key (declare the SshKey), or reuse the one already on the account.

    The key this stack uploaded is the one whose id its last `up` recorded: the
    stack keeps declaring it (its state and `pulumi destroy` own it), whatever its
    name, so renaming the droplet renames the key in place (SshKey ``name`` is not
    ForceNew, digitalocean/sshkey/resource_ssh_key.go:31-35; Update sends it, :126-) instead of dropping it,
    which would delete it from the account. Any other key with the fingerprint
    (added by hand, or uploaded by another stack) is reused and never touched.
    A stack of an earlier version recorded no ids: its key carries ``<droplet_name>-deploy``, and
    keeps that name. Any other stack names its key ``<droplet_name>-deploy-<project>-<stack>``: a
    name no other stack or project gives its key, so a stack whose first `up` failed before its
    outputs were written (no ids recorded yet, the key already uploaded and in its state) still
    knows its own key and keeps declaring it, instead of dropping it (which would delete it).
    """
    record = record if record is not None else stack_record()
    legacy = f"{droplet_name}-deploy"
    qualified = f"{droplet_name}-deploy-{pulumi.get_project()}-{pulumi.get_stack()}"
    own_name = legacy if record.kind == "legacy" else qualified
    fp = fingerprint(public_key)
    found = _read(
        "the account's SSH keys",
        lambda: do.get_ssh_keys(filters=[do.GetSshKeysFilterArgs(key="fingerprint", values=[fp])]).ssh_keys,
    )
    if record.kind == "recorded":
        others = [k for k in found if str(k.id) != record.ssh_key]
    elif record.kind == "legacy":
        others = [k for k in found if k.name != own_name]
    else:  # nothing recorded: a new stack, or one whose first `up` failed before recording
        others = [k for k in found if k.name != own_name]
    return KeyOnAccount(fingerprint=fp, upload=not others, name=own_name)


# ------------------------------------------------- droplets and the VPCs


def _vpc_name(vpc_id: str) -> str:
    return str(_read(f"VPC {vpc_id}", lambda: do.get_vpc(id=vpc_id)).name)


def stack_droplets(stack: str, project: str) -> list[LiveDroplet]:
    """The stack's droplets on the account: tagged ``stack-<stack>``, and not another project's.

    getDroplets lists every droplet and filters on the client side; ``tags`` is a
    filter key (a set: digitalocean/droplet/droplets.go:111, digitalocean/tag/tags.go:28-34;
    every non-map attribute is one, internal/datalist/schema.go:130-139) and a set
    matches when any element equals the value (internal/datalist/values.go:45-53,
    exact match case-insensitively, :17-20; terraform-provider-digitalocean 401992a).
    Droplets made before the project tag have none and are taken as this stack's.
    """
    mine, ours = stack_tag(stack), project_tag(project)
    found = _read(
        "the stack's droplets",
        lambda: do.get_droplets(filters=[do.GetDropletsFilterArgs(key="tags", values=[mine])]).droplets,
    )
    out: list[LiveDroplet] = []
    for d in found:
        tags = tuple(d.tags or ())
        projects = [t for t in tags if t.startswith("project-")]
        if projects and ours not in projects:
            continue  # another project's stack of the same name
        out.append(LiveDroplet(
            id=str(d.id), name=d.name, region=d.region, image=str(d.image or ""), monitoring=bool(d.monitoring),
            ipv6=bool(d.ipv6), vpc_uuid=str(d.vpc_uuid or ""),
            vpc_name=_vpc_name(d.vpc_uuid) if d.vpc_uuid else "", tags=tags,
            size=str(d.size or ""), ipv4_address=str(d.ipv4_address or ""),
        ))
    return out


def region_default_vpc(region: str) -> Vpc | None:
    """The region's default VPC, or None when the region has none yet (the next VPC made there becomes it)."""
    try:
        found = do.get_vpc(region=region)
    except Exception as exc:  # the provider's error text is the only signal
        if NO_DEFAULT_VPC in str(exc):
            return None
        raise ConfigError(token_problem(f"the default VPC of region {region}", exc)) from None
    return Vpc(id=str(found.id), name=str(found.name))


def read_live_stack(spec: StackSpec, *, stack: str, project: str, droplet_name: str) -> LiveStack:
    """Everything the program keeps of the stack as it is; one ConfigError naming every key whose change
    would replace a protected droplet.

    A droplet that exists keeps its image (unless the config sets ``image``) and its VPC (unless
    ``replicas >= 2``), whatever ``protect`` says: a change of the program's defaults never replaces a server.
    """
    record = stack_record()
    live = LiveStack(record=record)
    if spec.existing_host:
        return live
    live.lb_tag = lb_tag_name(droplet_name, project, stack, record)
    live.droplets = stack_droplets(stack, project)
    names = [vpc_name(droplet_name, project, stack), legacy_vpc_name(droplet_name)]
    problems, outside = replacement_problems(spec, live.droplets, names, record.vpc)
    if problems:
        raise ConfigError(format_problems(problems))
    live.outside_vpc = bool(outside) and spec.replica_count == 1 and not spec.move_to_vpc
    if live.outside_vpc:
        pulumi.log.warn(
            f"droplet {outside[0]} predates the stack's VPC {names[0]}; it stays where it is. Scaling out "
            "(replicas >= 2) will need it replaced: see README, 'Changes that replace a server'."
        )
    live.region_default = region_default_vpc(spec.region)
    default = live.region_default
    if default is not None:
        if record.kind == "recorded":
            live.vpc_is_region_default = default.id == record.vpc and default.id != ""
        elif record.kind == "legacy":  # an earlier version's stack: its VPC is known by name only
            live.vpc_is_region_default = default.name in names and default.name != region_default_name(spec.region)
        # a new stack owns no VPC yet (a default left by a destroyed stack of the same names is not its own)
    return live

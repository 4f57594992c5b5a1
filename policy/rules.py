"""Policy rules for plumber-hosting stacks, free of the Pulumi engine.

Each rule is a plain function over resource properties that returns the
violation messages it finds, so tests can feed it fake resources. The
``validate_*`` functions adapt them to CrossGuard's callbacks (they take
``args`` and ``report_violation``), and ``POLICIES`` lists the policy objects
``__main__.py`` hands to ``PolicyPack``.

What the rules read:

* ``digitalocean:index/firewall:Firewall`` inputs: ``inboundRules``
  (``protocol``, ``portRange``, ``sourceAddresses``);
* ``digitalocean:index/droplet:Droplet`` inputs: ``backups``, ``size``;
* the registered outputs of the program's components:
  ``plumber-hosting:index:Server`` (``stack``, ``mode``, ``reserved_ip``,
  ``size``, ``replicas``, ``admin_cidrs``), ``plumber-hosting:index:Site``
  (``domain``, ``https``) and ``plumber-hosting:index:PlumberApp`` (``name``,
  ``workers``, ``memory_max_mb``).

The stack name comes from the resources' URNs
(``urn:pulumi:<stack>::<project>::<type>::<name>``), which the engine always
sets; failing that from the Server component's ``stack`` output, and last from
``PULUMI_STACK``, which the Pulumi CLI sets for policy packs. A stack whose
name starts with ``prod`` is a production stack.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

PACK_NAME = "plumber-hosting-guardrails"
PROD_PREFIX = "prod"

DROPLET = "digitalocean:index/droplet:Droplet"
FIREWALL = "digitalocean:index/firewall:Firewall"
RESERVED_IP = "digitalocean:index/reservedIp:ReservedIp"
RESERVED_IP_ASSIGNMENT = "digitalocean:index/reservedIpAssignment:ReservedIpAssignment"
LOAD_BALANCER = "digitalocean:index/loadBalancer:LoadBalancer"
SERVER = "plumber-hosting:index:Server"
SITE = "plumber-hosting:index:Site"
APP = "plumber-hosting:index:PlumberApp"

SSH_PORT = 22


class Resource(Protocol):
    """What the stack rules need of a resource (PolicyResource has it)."""

    resource_type: str
    props: Mapping[str, Any]
    urn: str
    name: str


# --------------------------------------------------------------------------
# helpers


def stack_from_urn(urn: str | None) -> str | None:
    """``urn:pulumi:prod::plumber-hosting::...`` -> ``prod``."""
    if not urn or not urn.startswith("urn:pulumi:"):
        return None
    head = urn[len("urn:pulumi:"):].split("::", 1)[0]
    return head or None


def is_prod(stack: str | None) -> bool:
    """Production stacks are those whose name starts with ``prod``."""
    if not stack:
        return False
    return stack.rsplit("/", 1)[-1].startswith(PROD_PREFIX)


def resolve_stack(
    urns: Iterable[str | None] = (),
    server_stack: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The stack name: from a URN, else the Server output, else PULUMI_STACK."""
    for urn in urns:
        stack = stack_from_urn(urn)
        if stack:
            return stack
    if server_stack:
        return str(server_stack)
    env = os.environ if environ is None else environ
    return env.get("PULUMI_STACK") or None


def _seq(value: Any) -> list[Any]:
    """A property that should be a list (proxied or not) as a list; else []."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(value)
    return []


def _int(value: Any, default: int | None = None) -> int | None:
    """Numbers arrive from the engine as floats; None and junk give default."""
    if value is None or isinstance(value, bool):
        return default
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def is_anywhere(cidr: Any) -> bool:
    """True for a network of prefix length 0 (0.0.0.0/0, ::/0, spelled any way)."""
    try:
        return ipaddress.ip_network(str(cidr).strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


def port_range_includes(port_range: Any, port: int) -> bool:
    """DigitalOcean port ranges: ``"22"``, ``"20-30"``, ``"all"`` (or empty, = all)."""
    text = "" if port_range is None else str(port_range).strip().lower()
    if text in ("", "all", "0", "1-65535"):
        return True
    if "-" in text:
        low, _, high = text.partition("-")
        try:
            return int(low) <= port <= int(high)
        except ValueError:
            return False
    try:
        return int(text) == port
    except ValueError:
        return False


_VCPU_SLUG = re.compile(r"^(?!gpu)[a-z][a-z0-9_.]*-\d+vcpu-(?P<mem>\d+)(?P<unit>mb|gb)(?:-.*)?$")
_CPU_SLUG = re.compile(r"^c2?-(?P<cpus>\d+)(?:-intel)?$")
_LEGACY_SLUG = re.compile(r"^(?P<mem>\d+)(?P<unit>mb|gb)$")


def droplet_memory_mb(slug: Any) -> int | None:
    """Memory of a droplet size slug in MB; None for a slug it doesn't know.

    ``s-1vcpu-2gb`` -> 2048, ``s-2vcpu-4gb-intel`` -> 4096,
    ``s-1vcpu-512mb-10gb`` -> 512 (the first size after the vCPUs is memory,
    a later one is disk), ``g-2vcpu-8gb`` -> 8192, ``m-2vcpu-16gb`` -> 16384,
    ``c-2`` -> 4096 (CPU-optimized: 2 GB per vCPU), ``1gb`` -> 1024 (legacy).
    """
    if not isinstance(slug, str):
        return None
    text = slug.strip().lower()
    for pattern in (_VCPU_SLUG, _LEGACY_SLUG):
        match = pattern.match(text)
        if match:
            amount = int(match.group("mem"))
            return amount * 1024 if match.group("unit") == "gb" else amount
    match = _CPU_SLUG.match(text)
    if match:
        return int(match.group("cpus")) * 2 * 1024
    return None


def _of_type(resources: Iterable[Resource], type_: str) -> list[Resource]:
    return [r for r in resources if r.resource_type == type_]


# --------------------------------------------------------------------------
# rules over plain properties; each returns violation messages


def firewall_ssh_violations(stack: str | None, name: str, props: Mapping[str, Any]) -> list[str]:
    """(a) In prod, no Firewall inbound rule may open port 22 to the world."""
    if not is_prod(stack):
        return []
    out = []
    for index, rule in enumerate(_seq(props.get("inboundRules"))):
        if not isinstance(rule, Mapping):
            continue
        protocol = str(rule.get("protocol", "")).lower()
        if protocol not in ("tcp", "all", ""):
            continue
        if not port_range_includes(rule.get("portRange"), SSH_PORT):
            continue
        for cidr in _seq(rule.get("sourceAddresses")):
            if is_anywhere(cidr):
                out.append(
                    f"firewall '{name}' inbound rule {index} opens SSH (port 22) to {cidr} in "
                    f"production stack '{stack}'; set plumber-hosting:admin_cidrs to the "
                    "office/VPN ranges that need SSH"
                )
    return out


def server_admin_cidr_violations(stack: str | None, server: Mapping[str, Any]) -> list[str]:
    """(a) In prod, the Server's admin_cidrs must not include 0.0.0.0/0 or ::/0."""
    if not is_prod(stack):
        return []
    return [
        f"admin_cidrs contains {cidr}, which opens SSH to the whole internet in production "
        f"stack '{stack}'; set plumber-hosting:admin_cidrs to the office/VPN ranges that need SSH"
        for cidr in _seq(server.get("admin_cidrs"))
        if is_anywhere(cidr)
    ]


def site_https_violations(site: Mapping[str, Any]) -> list[str]:
    """(b) A Site with a domain must serve HTTPS (every stack)."""
    domain = site.get("domain")
    if not domain or _truthy(site.get("https")):
        return []
    return [
        f"site domain '{domain}' is served without HTTPS; set plumber-hosting:https "
        "(email, accept_tos) so the domain gets a certificate"
    ]


def app_workers_violations(stack: str | None, app: Mapping[str, Any]) -> list[str]:
    """(c) In prod, every PlumberApp runs at least two workers."""
    if not is_prod(stack):
        return []
    workers = _int(app.get("workers"), default=1)
    if workers is not None and workers >= 2:
        return []
    return [
        f"app '{app.get('name', '?')}' has workers={workers} in production stack '{stack}'; "
        "production apps need workers >= 2 so one busy or restarting worker does not take "
        "the API down"
    ]


def server_endpoint_violations(stack: str | None, server: Mapping[str, Any]) -> list[str]:
    """(c) In prod, a droplet Server needs a reserved IP or replicas >= 2."""
    if not is_prod(stack):
        return []
    if server.get("mode") == "existing":
        # An existing host keeps its own address; Pulumi never replaces it.
        return []
    replicas = _int(server.get("replicas"), default=1) or 1
    if _truthy(server.get("reserved_ip")) or replicas >= 2:
        return []
    return [
        f"server in production stack '{stack}' has neither a reserved IP nor replicas >= 2 "
        f"(reserved_ip={_truthy(server.get('reserved_ip'))}, replicas={replicas}); set "
        "plumber-hosting:reserved_ip: true (or replicas >= 2 behind a load balancer) so the "
        "address survives a droplet replacement"
    ]


def inferred_endpoint_violations(stack: str | None, resources: Sequence[Resource]) -> list[str]:
    """(c) Without Server outputs: prod droplets need a ReservedIp or a LoadBalancer."""
    if not is_prod(stack):
        return []
    droplets = _of_type(resources, DROPLET)
    if not droplets:
        return []
    if _of_type(resources, RESERVED_IP) or _of_type(resources, RESERVED_IP_ASSIGNMENT):
        return []
    if _of_type(resources, LOAD_BALANCER) and len(droplets) >= 2:
        return []
    return [
        f"production stack '{stack}' has {len(droplets)} droplet(s) and neither a reserved IP "
        "nor a load balancer over >= 2 droplets; set plumber-hosting:reserved_ip: true"
    ]


def droplet_backup_violations(stack: str | None, name: str, props: Mapping[str, Any]) -> list[str]:
    """(d) In prod, every droplet has backups on."""
    if not is_prod(stack) or _truthy(props.get("backups")):
        return []
    return [
        f"droplet '{name}' has backups off in production stack '{stack}'; set "
        "plumber-hosting:backups: true"
    ]


def memory_violations(size: Any, apps: Sequence[Mapping[str, Any]]) -> list[str]:
    """Advisory: the droplet's memory should cover sum(memory_max_mb * workers)."""
    memory = droplet_memory_mb(size)
    if memory is None:
        return []
    parts = []
    total = 0
    for app in apps:
        limit = _int(app.get("memory_max_mb"))
        if limit is None:
            continue
        workers = _int(app.get("workers"), default=1) or 1
        total += limit * workers
        parts.append(f"{app.get('name', '?')} {limit}x{workers}")
    if total <= memory:
        return []
    return [
        f"droplet size '{size}' has {memory} MB of memory but the apps may use up to "
        f"{total} MB (memory_max x workers: {', '.join(parts)}); pick a larger size or "
        "lower memory_max/workers"
    ]


# --------------------------------------------------------------------------
# CrossGuard adapters


def _stack_for(args: StackValidationArgs) -> str | None:
    resources = list(args.resources)
    servers = _of_type(resources, SERVER)
    server_stack = servers[0].props.get("stack") if servers else None
    return resolve_stack((r.urn for r in resources), server_stack)


def _report(report_violation: ReportViolation, messages: Iterable[str], urn: str | None) -> None:
    for message in messages:
        report_violation(message, urn)


def validate_firewall_ssh(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != FIREWALL:
        return
    stack = resolve_stack([args.urn])
    _report(report_violation, firewall_ssh_violations(stack, args.name, args.props), None)


def validate_droplet_backups(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != DROPLET:
        return
    stack = resolve_stack([args.urn])
    _report(report_violation, droplet_backup_violations(stack, args.name, args.props), None)


def validate_admin_cidrs(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    stack = _stack_for(args)
    for server in _of_type(args.resources, SERVER):
        _report(report_violation, server_admin_cidr_violations(stack, server.props), server.urn)


def validate_site_https(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for site in _of_type(args.resources, SITE):
        _report(report_violation, site_https_violations(site.props), site.urn)


def validate_app_workers(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    stack = _stack_for(args)
    for app in _of_type(args.resources, APP):
        _report(report_violation, app_workers_violations(stack, app.props), app.urn)


def validate_stable_endpoint(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    stack = _stack_for(args)
    resources = list(args.resources)
    servers = [s for s in _of_type(resources, SERVER) if s.props.get("mode")]
    if servers:
        for server in servers:
            _report(report_violation, server_endpoint_violations(stack, server.props), server.urn)
    else:
        _report(report_violation, inferred_endpoint_violations(stack, resources), None)


def validate_memory(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    resources = list(args.resources)
    # With replicas every droplet runs every app once: one PlumberApp per app
    # name and replica, each droplet's memory covers one of each.
    by_name: dict[str, Mapping[str, Any]] = {}
    for a in _of_type(resources, APP):
        by_name.setdefault(str(a.props.get("name", a.name)), a.props)
    apps = list(by_name.values())
    if not apps:
        return
    sizes: dict[str, str | None] = {}
    for server in _of_type(resources, SERVER):
        if server.props.get("size"):
            sizes[str(server.props["size"])] = server.urn
    if not sizes:
        for droplet in _of_type(resources, DROPLET):
            size = droplet.props.get("size")
            if isinstance(size, str) and size:
                sizes.setdefault(size, droplet.urn)
    for size, urn in sizes.items():
        _report(report_violation, memory_violations(size, apps), urn)


ResourceRule = Callable[[ResourceValidationArgs, ReportViolation], None]
StackRule = Callable[[StackValidationArgs, ReportViolation], None]


def build_policies() -> list[Policy]:
    """The pack's policies, each with its enforcement level."""
    mandatory = EnforcementLevel.MANDATORY
    return [
        ResourceValidationPolicy(
            name="prod-ssh-not-open-to-world",
            description="In prod* stacks no firewall opens SSH (port 22) to 0.0.0.0/0 or ::/0.",
            validate=validate_firewall_ssh,
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="prod-admin-cidrs-restricted",
            description="In prod* stacks the server's admin_cidrs do not include 0.0.0.0/0 or ::/0.",
            validate=validate_admin_cidrs,
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="https-when-domain-set",
            description="A site with a domain serves HTTPS.",
            validate=validate_site_https,
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="prod-apps-multiple-workers",
            description="In prod* stacks every Plumber app runs at least two workers.",
            validate=validate_app_workers,
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="prod-stable-endpoint",
            description="In prod* stacks the server has a reserved IP or replicas >= 2 behind a load balancer.",
            validate=validate_stable_endpoint,
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="prod-droplet-backups",
            description="In prod* stacks every droplet has backups enabled.",
            validate=validate_droplet_backups,
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="droplet-memory-fits-apps",
            description="The droplet size has at least the memory the apps may use (memory_max x workers).",
            validate=validate_memory,
            enforcement_level=EnforcementLevel.ADVISORY,
        ),
    ]


POLICIES: list[Policy] = build_policies()

"""Stack configs every validator of the DigitalOcean provider accepts but a real account refuses.

Checked with the rest of the config (``components/config.py``), so the user
gets one message naming the keys before any resource is registered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi
import pulumi_digitalocean as do

if TYPE_CHECKING:
    from components.config import StackSpec


def droplet_problems(spec: StackSpec) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if spec.load_balanced and spec.https is not None and not spec.manage_dns:
        # A lets_encrypt certificate for a load balancer is issued through DigitalOcean DNS:
        # the domain's zone must be managed there (docs/resources/certificate.md in the provider).
        out.append((
            "manage_dns",
            "with replicas >= 2 and https, the load balancer's Let's Encrypt certificate is issued through "
            "DigitalOcean DNS: the zone of 'domain' must be in DigitalOcean and manage_dns true "
            "(or remove 'https', or set replicas: 1 to let the server get its own certificate)",
        ))
    return out


# Inputs that make the provider create a new droplet (ForceNew, or the ipv6 CustomizeDiff) and
# that the API reads back, so a change can be named before anything runs
# (digitalocean/droplet/resource_droplet.go; the data source: digitalocean/droplet/droplets.go).
# ssh keys and user_data are not read back: their change meets Pulumi's protect error instead.
UNPROTECT = (
    "To replace it on purpose: pulumi config set plumber-hosting:protect false, pulumi up "
    "(a new droplet; every command runs again on it), then pulumi config rm plumber-hosting:protect. "
    "See README, 'Changes that replace a server'."
)


def replacement_problems(
    spec: StackSpec, droplet_names: list[str], vpc_name: str
) -> tuple[list[tuple[str, str]], list[str]]:
    """With ``protect`` on, a config change that would replace a live droplet, named before anything runs;
    and the live droplets that stay outside the stack's VPC (made before it existed, one-server stack).

    Looks the stack's droplets up on the account (the provider's getDroplets data source).
    """
    if spec.existing_host:
        return [], []
    live = do.get_droplets(filters=[do.GetDropletsFilterArgs(key="name", values=droplet_names)]).droplets
    out: list[tuple[str, str]] = []
    outside: list[str] = []
    for d in sorted(live, key=lambda d: d.name):
        changes: list[tuple[str, str]] = []
        if d.region and d.region != spec.region:
            changes.append(("region", f"{d.region} -> {spec.region}"))
        if d.image and not d.image.isdigit() and d.image != spec.image:  # a retired image has only an id
            changes.append(("image", f"{d.image} -> {spec.image}"))
        if d.monitoring != spec.monitoring:
            changes.append(("monitoring", f"{str(d.monitoring).lower()} -> {str(spec.monitoring).lower()}"))
        if d.ipv6 and not spec.ipv6:
            changes.append(("ipv6", "true -> false (turning it on is done in place, turning it off is not)"))
        if d.vpc_uuid and do.get_vpc(id=d.vpc_uuid).name != vpc_name:
            # Made before every droplet lived in the stack's VPC (components/network.py). vpc_uuid is ForceNew
            # but Optional+Computed (digitalocean/droplet/resource_droplet.go): left out, it is no change, so
            # a one-server stack keeps its droplet where it is; behind a load balancer it must be in the VPC.
            if spec.replica_count == 1 or not spec.protect:
                outside.append(d.name)
            if spec.replica_count >= 2:
                changes.append(("replicas", f"droplet {d.name} is not in the stack's VPC {vpc_name} (it was made "
                                            "before this version put every droplet there), and replicas >= 2 "
                                            "needs it there; moving it"))
        if not spec.protect:
            continue  # replaced on purpose: Pulumi carries it out
        for key, change in changes:
            keep = "To keep the server, set the key back. " if key != "protect" else ""
            out.append((key, f"{change} replaces droplet {d.name}: a new, empty server; the old one and "
                             f"everything on its disk are deleted. protect is on, so Pulumi would refuse. "
                             f"{keep}{UNPROTECT}"))
    return out, outside


def check_replacements(spec: StackSpec, base_name: str) -> bool:
    """Raise one ConfigError naming every key whose change would replace a protected droplet.

    Returns whether the one-server stack's droplet stays outside the stack's VPC (an older stack: its
    droplet is left where it is rather than replaced; scaling out then needs the replacement).
    """
    from components.config import ConfigError, format_problems
    from components.network import vpc_name as stack_vpc_name
    from components.server import droplet_names

    # The first replica's droplet may still carry the one-server name (it is renamed in place).
    names = [*([base_name] if spec.load_balanced else []), *droplet_names(spec, base_name)]
    vpc_name = stack_vpc_name(base_name)
    problems, outside = replacement_problems(spec, names, vpc_name)
    if problems:
        raise ConfigError(format_problems(problems))
    keep = bool(outside) and spec.replica_count == 1 and spec.protect
    if keep:
        pulumi.log.warn(
            f"droplet {outside[0]} predates the stack's VPC {vpc_name}; it stays where it is. Scaling out "
            "(replicas >= 2) will need it replaced: see README, 'Changes that replace a server'."
        )
    return keep

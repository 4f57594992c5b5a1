"""The stack's own VPC: every droplet of a droplet stack lives in it from the first `up`.

A droplet cannot change VPC: ``vpc_uuid`` is ForceNew (and Optional+Computed,
so leaving it out later is no change at all; digitalocean/droplet/resource_droplet.go:276-282).
With the VPC there from the start, a ``replicas`` change in either direction
only adds or removes droplets: the first droplet never moves, and the VPC is
never deleted while a droplet is still in it (which the API refuses, 403/409,
digitalocean/vpc/resource_vpc.go:165-176 retries it for 2 minutes and fails).

The region's default VPC. DigitalOcean makes the first VPC created in a region
the region's default, and a default VPC cannot be deleted (the API's
``vpcs.create``: "the first one that you create will be set as the default for
that region. The default VPC for a region cannot be changed or deleted"): the
same 403, so `pulumi destroy` would fail on it for good. So:

- a region with no default VPC yet gets one first, ``plumber-hosting-default-<region>``,
  with ``retain_on_delete``: the stack's own VPC is then never the default, and
  destroy leaves that empty VPC on the account (Pulumi forgets it without
  calling the API);
- a stack whose own VPC already is the region's default (made by an earlier
  version as the first VPC of its region) keeps it, and its name, with
  ``retain_on_delete``: destroy leaves it too, instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_digitalocean as do

from components.config import StackSpec
from components.droplet_rules import LiveStack, region_default_name, vpc_name

__all__ = ["TYPE", "Network", "NetworkArgs", "vpc_name"]

TYPE = "plumber-hosting:index:Network"


@dataclass
class NetworkArgs:
    spec: StackSpec
    droplet_name: str
    live: LiveStack = field(default_factory=LiveStack)  # components/account.py: the account as it is


class Network(pulumi.ComponentResource):
    vpc: do.Vpc
    region_default: do.Vpc | None  # the region's default VPC, when this stack made it

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        spec, live = args.spec, args.live
        project, stack = pulumi.get_project(), pulumi.get_stack()
        self.region_default = None
        default = live.region_default
        if default is None or (live.record.region_default != "" and default.id == live.record.region_default):
            # None yet (or the one this stack made, declared again so its state keeps it).
            self.region_default = do.Vpc(
                f"{name}-region-default",
                name=region_default_name(spec.region),
                region=spec.region,
                description="plumber-hosting: the region's default VPC (DigitalOcean cannot delete it); left empty",
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            )
        # Scale-out stacks made before this component had the VPC as the load balancer's
        # child `lb-vpc`: the alias keeps it (and so every droplet in it) as it is.
        old_parent = f"urn:pulumi:{stack}::{project}::plumber-hosting:index:LoadBalancer::lb"
        # <droplet_name>-vpc before: renamed in place (`name` is not ForceNew, resource_vpc.go:32-37, 145-159).
        # A stack VPC that is its region's default keeps the name it has: destroy leaves it on the account,
        # and the same stack made again later must be able to create its VPC under its own name.
        keep_name = live.vpc_is_region_default and default is not None
        self.vpc = do.Vpc(
            f"{name}-vpc",
            name=default.name if keep_name and default is not None else vpc_name(args.droplet_name, project, stack),
            region=spec.region,
            description="plumber-hosting: the stack's droplets (and load balancer)",
            opts=pulumi.ResourceOptions(
                parent=self,
                aliases=[pulumi.Alias(name="lb-vpc", parent=old_parent)],
                depends_on=[self.region_default] if self.region_default is not None else None,
                # The first VPC of its region (an earlier version made it): DigitalOcean cannot delete it.
                retain_on_delete=live.vpc_is_region_default,
            ),
        )
        self.register_outputs({"vpc": self.vpc.id})

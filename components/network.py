"""The stack's own VPC: every droplet of a droplet stack lives in it from the first `up`.

A droplet cannot change VPC: ``vpc_uuid`` is ForceNew (and Optional+Computed,
so leaving it out later is no change at all; digitalocean/droplet/resource_droplet.go).
With the VPC there from the start, a ``replicas`` change in either direction
only adds or removes droplets: the first droplet never moves, and the VPC is
never deleted while a droplet is still in it (which the API refuses, 403/409,
digitalocean/vpc/resource_vpc.go retries it for 2 minutes and fails).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as do

from components.config import StackSpec

TYPE = "plumber-hosting:index:Network"


def vpc_name(droplet_name: str) -> str:
    return f"{droplet_name}-vpc"


@dataclass
class NetworkArgs:
    spec: StackSpec
    droplet_name: str


class Network(pulumi.ComponentResource):
    vpc: do.Vpc

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        # Scale-out stacks made before this component had the VPC as the load balancer's
        # child `lb-vpc`: the alias keeps it (and so every droplet in it) as it is.
        old_parent = f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::plumber-hosting:index:LoadBalancer::lb"
        self.vpc = do.Vpc(
            f"{name}-vpc",
            name=vpc_name(args.droplet_name),
            region=args.spec.region,
            description="plumber-hosting: the stack's droplets (and load balancer)",
            opts=pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(name="lb-vpc", parent=old_parent)]),
        )
        self.register_outputs({"vpc": self.vpc.id})

"""Whether a server is in service: what its /healthz (and so a load balancer) says.

Created once the server's apps are deployed, it puts the server in service and
waits until its /healthz answers 200. Deleted (a replica removed, the stack
destroyed) before the apps are, it takes the server out of service and, behind
a DigitalOcean load balancer, waits until the load balancer has stopped sending
requests, so removing a replica fails no request.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.config import StackSpec
from components.loadbalancer import DRAIN_SECONDS, HEALTH_INTERVAL, HEALTHY_THRESHOLD
from components.remote_script import child_options, owner_token, script_command
from components.render import render

TYPE = "plumber-hosting:index:Rotation"
JOIN_TIMEOUT = 120


def join_script(token: str, settle_seconds: int = 0) -> str:
    return render("scripts/join-rotation.sh.j2", token=token, timeout=JOIN_TIMEOUT, settle_seconds=settle_seconds)


def settle_seconds(spec: StackSpec) -> int:
    """Behind a load balancer: how long it takes to count a healthy server back in."""
    return HEALTH_INTERVAL * HEALTHY_THRESHOLD if spec.load_balanced else 0


def leave_script(spec: StackSpec, token: str) -> str:
    return render("scripts/leave-rotation.sh.j2", token=token, drain_seconds=DRAIN_SECONDS if spec.load_balanced else 0)


def rotation_token(name: str) -> str:
    """What the rotation named `name` records on its server while it holds it in service."""
    return owner_token(name, join_script(""))


@dataclass
class RotationArgs:
    spec: StackSpec
    connection: remote.ConnectionArgs
    sudo: bool = False


class Rotation(pulumi.ComponentResource):
    command: remote.Command

    def __init__(self, name: str, args: RotationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        token = rotation_token(name)
        self.command = script_command(
            f"{name}-join",
            connection=args.connection,
            script=join_script(token, settle_seconds(args.spec)),
            delete_script=leave_script(args.spec, token),
            sudo=args.sudo,
            opts=child_options(self, opts),
        )
        self.register_outputs({})

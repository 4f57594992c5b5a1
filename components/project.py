"""A DigitalOcean project grouping the stack's droplets, reserved IP and load balancer."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as do

from components.droplet_rules import project_name

TYPE = "plumber-hosting:index:Project"


def environment(stack: str) -> str:
    """DigitalOcean knows three environments; the stack name picks one (and names the project)."""
    name = stack.rsplit("/", 1)[-1].lower()
    if name.startswith("prod"):
        return "Production"
    if name.startswith("stag"):
        return "Staging"
    return "Development"


@dataclass
class ProjectArgs:
    stack: str
    droplet_name: str
    resources: list[pulumi.Input[str]]  # DigitalOcean URNs (do:droplet:123, ...)


class Project(pulumi.ComponentResource):
    project: do.Project

    def __init__(self, name: str, args: ProjectArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        # Project names are unique per account: two stacks with one droplet_name each get their own.
        self.project = do.Project(
            f"{name}-group",
            name=project_name(args.droplet_name, pulumi.get_project(), args.stack),
            description=f"plumber-hosting, stack {args.stack}",
            purpose="Web Application",
            environment=environment(args.stack),
            resources=args.resources,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"name": self.project.name, "environment": environment(args.stack)})

"""The machine: a DigitalOcean droplet with its reserved IP and cloud firewall,
or an existing server reached over SSH (existing-host mode)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as do
from pulumi_command import remote

from components.config import StackSpec
from components.render import render

TYPE = "plumber-hosting:index:Server"


@dataclass
class ServerArgs:
    spec: StackSpec
    private_key: pulumi.Output[str]
    stack: str


class Server(pulumi.ComponentResource):
    address: pulumi.Output[str]
    ipv6_address: pulumi.Output[str] | None
    connection: remote.ConnectionArgs
    sudo: bool
    droplet: do.Droplet | None

    def __init__(self, name: str, args: ServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)
        self.droplet = None
        self.ipv6_address = None

        if spec.host is not None:
            self.address = pulumi.Output.from_input(spec.host.address)
            user, port = spec.host.user, spec.host.port
            mode = "existing"
        else:
            user, port, mode = "root", 22, "droplet"
            droplet_name = spec.droplet_name or f"plumber-{args.stack}"
            ssh_keys: list[pulumi.Input[str]] = list(spec.ssh_key_ids)
            if spec.ssh_public_key is not None:
                key = do.SshKey(f"{name}-key", name=f"{droplet_name}-deploy", public_key=spec.ssh_public_key, opts=child)
                ssh_keys.append(key.fingerprint)
            tags = sorted({"plumber-hosting", f"stack-{args.stack}", *spec.tags})
            self.droplet = do.Droplet(
                f"{name}-droplet",
                name=droplet_name,
                image=spec.image,
                region=spec.region,
                size=spec.size,
                ssh_keys=ssh_keys,
                backups=spec.backups,
                monitoring=spec.monitoring,
                ipv6=spec.ipv6,
                tags=tags,
                # Never changes with apps: apps must never replace the droplet.
                user_data=render("cloud-init/user-data.yaml.j2"),
                opts=child,
            )
            if spec.ipv6:
                self.ipv6_address = self.droplet.ipv6_address
            firewall = do.Firewall(
                f"{name}-firewall",
                name=f"{droplet_name}-fw",
                droplet_ids=[self.droplet.id.apply(int)],
                inbound_rules=[
                    do.FirewallInboundRuleArgs(protocol="tcp", port_range="22", source_addresses=spec.admin_cidrs),
                    do.FirewallInboundRuleArgs(protocol="tcp", port_range="80", source_addresses=["0.0.0.0/0", "::/0"]),
                    do.FirewallInboundRuleArgs(protocol="tcp", port_range="443", source_addresses=["0.0.0.0/0", "::/0"]),
                    do.FirewallInboundRuleArgs(protocol="icmp", source_addresses=["0.0.0.0/0", "::/0"]),
                ],
                outbound_rules=[
                    do.FirewallOutboundRuleArgs(protocol=p, port_range="1-65535" if p != "icmp" else None,
                                                destination_addresses=["0.0.0.0/0", "::/0"])
                    for p in ("tcp", "udp", "icmp")
                ],
                opts=child,
            )
            if spec.reserved_ip:
                rip = do.ReservedIp(f"{name}-ip", region=spec.region, opts=child)
                assignment = do.ReservedIpAssignment(
                    f"{name}-ip-assignment",
                    ip_address=rip.ip_address,
                    droplet_id=self.droplet.id.apply(int),
                    opts=child,
                )
                # The address is usable once it is assigned and the firewall is up.
                self.address = pulumi.Output.all(rip.ip_address, assignment.id, firewall.id).apply(lambda v: v[0])
            else:
                self.address = pulumi.Output.all(self.droplet.ipv4_address, firewall.id).apply(lambda v: v[0])

        self.sudo = user != "root"
        self.connection = remote.ConnectionArgs(
            host=self.address,
            user=user,
            port=port,
            private_key=args.private_key,
            dial_error_limit=30,
            per_dial_timeout=15,
        )
        self.ssh_command = self.address.apply(
            lambda a: f"ssh {'-p ' + str(port) + ' ' if port != 22 else ''}{user}@{a}"
        )
        self.register_outputs(
            {
                "stack": args.stack,
                "mode": mode,
                "address": self.address,
                "reserved_ip": spec.reserved_ip and spec.host is None,
                "size": spec.size if spec.host is None else None,
                "replicas": 1,
                "admin_cidrs": spec.admin_cidrs,
            }
        )

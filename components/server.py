"""The machine: a DigitalOcean droplet with its reserved IP and cloud firewall,
or an existing server reached over SSH (existing-host mode).

Every droplet is in the stack's VPC (components/network.py). With
``replicas >= 2`` there is one Server per replica: droplets named
``<droplet_name>-<i>``, carrying its tag (the tag puts
them behind the load balancer and its firewall), without a reserved IP."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_digitalocean as do
from pulumi_command import remote

from components.account import ssh_key_on_account
from components.config import StackSpec
from components.loadbalancer import LoadBalancer, outbound_rules
from components.render import remote_script, render

TYPE = "plumber-hosting:index:Server"
IPV6_TIMEOUT = 60  # seconds the server has to hold its IPv6 address once it answers SSH


@dataclass
class ServerArgs:
    spec: StackSpec
    private_key: pulumi.Output[str]
    stack: str
    replica: int = 1  # 1-based
    front: LoadBalancer | None = None  # with replicas >= 2
    vpc: do.Vpc | None = None  # the stack's VPC (components/network.py): every droplet is in it
    ssh_keys: list[pulumi.Input[str]] | None = None  # the first replica's, shared by the others
    key_resources: list[pulumi.Resource] | None = None  # the first replica's uploaded key, if any
    after: list[pulumi.Resource] | None = None  # the previous replica serving: changes roll one droplet at a time


def droplet_base_name(spec: StackSpec, stack: str) -> str:
    """The configured name, else plumber-<stack> as a host name (Pulumi allows '_' in stack names)."""
    return spec.droplet_name or re.sub(r"[^A-Za-z0-9.-]+", "-", f"plumber-{stack}").strip("-.")


def droplet_names(spec: StackSpec, base: str) -> list[str]:
    """The droplets' names: the base name alone, or <base>-<i> per replica behind a load balancer."""
    if spec.existing_host:
        return []
    return [base] if not spec.load_balanced else [f"{base}-{i}" for i in range(1, spec.replicas + 1)]


def do_tag(text: str) -> str:
    """A valid DigitalOcean tag for `text` (letters, digits, ":", "-", "_"; 1-255: digitalocean/tag/tags.go)."""
    return re.sub(r"[^A-Za-z0-9:_-]", "-", text)[:255]


class Server(pulumi.ComponentResource):
    address: pulumi.Output[str]
    ipv6_address: pulumi.Output[str] | None
    connection: remote.ConnectionArgs
    sudo: bool
    droplet: do.Droplet | None
    identity: pulumi.Output[str] | None  # which machine the commands run on (a new droplet, a new one)
    ssh_keys: list[pulumi.Input[str]]
    key_resources: list[pulumi.Resource]
    project_urns: list[pulumi.Output[str]]

    def __init__(self, name: str, args: ServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)
        # Pulumi refuses to delete or replace these while `protect` (default true) is on: a
        # replaced droplet is a new, empty server. README: "Changes that replace a server".
        protected = pulumi.ResourceOptions(parent=self, protect=spec.protect)
        self.droplet = None
        self.identity = None
        self.ipv6_address = None
        self.ssh_keys = []
        self.key_resources = []
        self.project_urns = []

        if spec.existing_host:
            host = spec.existing_hosts[args.replica - 1]
            self.address = pulumi.Output.from_input(host.address)
            user, port = host.user, host.port
            mode = "existing"
        elif args.front is not None:
            user, port, mode = "root", 22, "droplet"
            self._droplet(name, args, child, droplet_names(spec, droplet_base_name(spec, args.stack))[args.replica - 1])
            assert self.droplet is not None
            # Usable once the load balancer's firewall guards it.
            self.address = pulumi.Output.all(self.droplet.ipv4_address, args.front.firewall.id).apply(lambda v: v[0])
        else:
            user, port, mode = "root", 22, "droplet"
            droplet_name = droplet_base_name(spec, args.stack)
            self._droplet(name, args, child, droplet_name)
            assert self.droplet is not None
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
                outbound_rules=outbound_rules(),
                opts=child,
            )
            if spec.reserved_ip:
                rip = do.ReservedIp(f"{name}-ip", region=spec.region, opts=protected)
                assignment = do.ReservedIpAssignment(
                    f"{name}-ip-assignment",
                    ip_address=rip.ip_address,
                    droplet_id=self.droplet.id.apply(int),
                    opts=child,
                )
                # Not in the project: the provider sends do:reservedip:<ip> but the API lists
                # do:floatingip:<ip>, a diff on every run that fails with 412 when applied
                # (digitalocean/project/resource_project.go; provider issues #1264, #1031).
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
        if spec.ipv6 and self.droplet is not None and args.front is None:
            self.ipv6_address = self._answered_ipv6(name)
        self.ssh_command = self.address.apply(
            lambda a: f"ssh {'-p ' + str(port) + ' ' if port != 22 else ''}{user}@{a}"
        )
        self.register_outputs(
            {
                "stack": args.stack,
                "mode": mode,
                "address": self.address,
                "reserved_ip": spec.reserved_ip and not spec.existing_host and not spec.load_balanced,
                "size": spec.size if not spec.existing_host else None,
                "replicas": spec.replica_count,
                "replica": args.replica,
                "admin_cidrs": spec.admin_cidrs,
            }
        )

    def _droplet(self, name: str, args: ServerArgs, child: pulumi.ResourceOptions, droplet_name: str) -> None:
        spec = args.spec
        key_resources: list[pulumi.Resource] = []
        if args.ssh_keys is not None:
            self.ssh_keys = list(args.ssh_keys)
            key_resources = list(args.key_resources or [])
        else:
            self.ssh_keys = list(spec.ssh_key_ids)
            if spec.ssh_public_key is not None:
                key_name = f"{droplet_base_name(spec, args.stack)}-deploy"
                on_account = ssh_key_on_account(spec.ssh_public_key, key_name)
                if on_account.upload:
                    key_resources.append(
                        do.SshKey(f"{name}-key", name=key_name, public_key=spec.ssh_public_key, opts=child)
                    )
                # The fingerprint as text, not the SshKey's output: the droplet's ssh_keys
                # (ForceNew) stay the same whoever uploaded the key.
                self.ssh_keys.append(on_account.fingerprint)
        self.key_resources = key_resources
        tags = sorted({"plumber-hosting", do_tag(f"stack-{args.stack}"), *spec.tags})
        extra: dict[str, Any] = {}
        if args.vpc is not None:
            extra["vpc_uuid"] = args.vpc.id  # ForceNew: the droplet is in it from its creation
        if args.front is not None:
            tags = [*tags, args.front.tag.name]  # behind the load balancer and its firewall
        self.droplet = do.Droplet(
            f"{name}-droplet",
            name=droplet_name,
            image=spec.image,
            region=spec.region,
            size=spec.size,
            ssh_keys=self.ssh_keys,
            backups=spec.backups,
            monitoring=spec.monitoring,
            ipv6=spec.ipv6,
            tags=tags,
            # Never changes with apps: apps must never replace the droplet.
            user_data=render("cloud-init/user-data.yaml.j2"),
            **extra,
            # A size change powers the droplet off, resizes and powers it on (no graceful shutdown);
            # resize_disk (provider default true) would grow the disk for good: a later downsize
            # then fails. CPU and memory only unless the stack asks (digitalocean/droplet/resource_droplet.go).
            resize_disk=spec.resize_disk,
            opts=pulumi.ResourceOptions(
                parent=self, protect=spec.protect, depends_on=[*key_resources, *(args.after or [])]
            ),
        )
        self.project_urns.append(self.droplet.droplet_urn)
        self.identity = self.droplet.id.apply(lambda i: f"droplet {i}")

    def _answered_ipv6(self, name: str) -> pulumi.Output[str]:
        """The droplet's IPv6 address, once the server itself holds it (for the AAAA record).

        Turned on for an existing droplet, ipv6 is enabled in place and the provider
        only warns that the OS needs configuring (resource_droplet.go, "Enabling IPv6
        requires additional OS-level configuration"): until it is, this command fails
        and no AAAA record points at an address that does not answer.
        """
        assert self.droplet is not None and self.identity is not None
        script = pulumi.Output.concat(
            "# plumber-hosting: on ", self.identity, "\n",  # as every command (components/fleet.py runs_on)
            self.droplet.ipv6_address.apply(
                lambda a: remote_script(render("scripts/check-ipv6.sh.j2", address=a, timeout=IPV6_TIMEOUT))
            ),
        )
        check = remote.Command(
            f"{name}-ipv6",
            connection=self.connection,
            create=script,
            update=script,
            add_previous_output_in_env=False,
            logging=remote.Logging.STDERR,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return check.stdout.apply(lambda out: (out or "").strip().splitlines()[-1] if (out or "").strip() else "")


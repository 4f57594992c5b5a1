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
from components.droplet_rules import image_is_explicit, project_tag, stack_tag
from components.loadbalancer import LoadBalancer, outbound_rules
from components.remote_script import on_droplet
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
        self._name = name
        self.reserved_ip: do.ReservedIp | None = None
        self.assignment: do.ReservedIpAssignment | None = None
        self.ipv6_address = None
        self.ssh_keys = []
        self.key_resources = []
        self.project_urns = []
        # What the server's commands wait for: everything here but the reserved IP's assignment,
        # which waits for them (depends_on=[server] would mean every child: a cycle).
        self.ready: list[pulumi.Resource] = []

        host: pulumi.Output[str]  # where the commands connect
        if spec.existing_host:
            existing = spec.existing_hosts[args.replica - 1]
            self.address = pulumi.Output.from_input(existing.address)
            host = self.address
            user, port = existing.user, existing.port
            mode = "existing"
        elif args.front is not None:
            user, port, mode = "root", 22, "droplet"
            self._droplet(name, args, child, droplet_names(spec, droplet_base_name(spec, args.stack))[args.replica - 1])
            assert self.droplet is not None
            # Usable once the load balancer's firewall guards it.
            self.address = pulumi.Output.all(self.droplet.ipv4_address, args.front.firewall.id).apply(lambda v: v[0])
            host = self.address
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
            # The commands reach the droplet at its own address, never through the reserved IP:
            # a new droplet (a replacement) is built while the reserved IP still points at the
            # old one, which keeps serving; the IP moves only once the new one serves
            # (serve_at_reserved_ip, called by components/fleet.py after the rotation).
            # Upgrade: a version that connected through the reserved IP recorded it as every
            # command's connection.host. Any input change is an Update (pulumi-go-provider v1.3.0
            # infer/resource.go:1194-1216 diffs old inputs against new), and a Command's Update
            # runs its script (pulumi-command v1.2.1 commandController.go:63-83), so each command
            # runs once more on the same droplet; each app's upload is copied again (the host is in
            # its triggers, components/app.py). That costs nothing extra here: the same upgrade
            # changes every script's text (the droplet check in the preamble), which re-runs each
            # of them anyway, and the scripts are idempotent. The alternative, the reserved IP as
            # host while the droplet holds it and its own address only for a new one, would flip
            # back at the `up` after every replacement and run everything again; this host never
            # changes while the droplet stays, so nothing re-runs after the upgrade.
            host = pulumi.Output.all(self.droplet.ipv4_address, firewall.id).apply(lambda v: v[0])
            self.ready.append(firewall)
            if spec.reserved_ip:
                self.reserved_ip = do.ReservedIp(f"{name}-ip", region=spec.region, opts=protected)
                # Not in the project: the provider sends do:reservedip:<ip> but the API lists
                # do:floatingip:<ip>, a diff on every run that fails with 412 when applied
                # (digitalocean/project/resource_project.go; provider issues #1264, #1031).
                # The public address: DNS, URLs and outputs name it, whichever droplet holds it.
                self.address = self.reserved_ip.ip_address
                self.ready.append(self.reserved_ip)
            else:
                self.address = host

        self.sudo = user != "root"
        self.connection = remote.ConnectionArgs(
            host=host,
            user=user,
            port=port,
            private_key=args.private_key,
            dial_error_limit=30,
            per_dial_timeout=15,
        )
        if spec.ipv6 and self.droplet is not None and args.front is None:
            self.ipv6_address = self._answered_ipv6(name)
        if self.droplet is not None:
            self.ready[:0] = [*self.key_resources, self.droplet]
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

    def serve_at_reserved_ip(self, serving: list[pulumi.Resource]) -> do.ReservedIpAssignment | None:
        """Points the reserved IP at this droplet once ``serving`` (its apps deployed, its health
        checked: components/fleet.py passes the rotation) is done; None without a reserved IP.

        A replaced droplet: the assignment's ``droplet_id`` is ForceNew
        (digitalocean/reservedip/resource_reserved_ip_assignment.go, schema), and no
        DeleteBeforeReplace is set for it (pulumi-digitalocean provider/resources.go), so Pulumi
        creates the new assignment first: the create assigns the IP to the new droplet and waits
        for the action (``resourceDigitalOceanReservedIPAssignmentCreate``), and the old
        assignment's delete, in the delete phase, unassigns only if the IP is still on the old
        droplet (``resourceDigitalOceanReservedIPAssignmentDelete``: here it is not). A failed
        build stops the run before this step, so the IP stays on the old droplet, which keeps
        serving. The old droplet is deleted only in the delete phase, which runs once the program's
        creates and updates have all succeeded (pulumi/pulumi 1b5949891b
        pkg/resource/deploy/deployment_executor.go, ``Execute`` :328-332 calls ``performPostSteps``,
        whose ``GenerateDeletes`` :486 also takes the deletes a failed run left pending,
        step_generator.go :2325-2328): the next `up` that succeeds finishes the replacement.
        Same name and parent as before it moved here: an upgrade keeps the resource (no diff).
        """
        if self.reserved_ip is None:
            return None
        assert self.droplet is not None
        self.assignment = do.ReservedIpAssignment(
            f"{self._name}-ip-assignment",
            ip_address=self.reserved_ip.ip_address,
            droplet_id=self.droplet.id.apply(int),
            opts=pulumi.ResourceOptions(parent=self, depends_on=serving),
        )
        return self.assignment

    def _droplet(self, name: str, args: ServerArgs, child: pulumi.ResourceOptions, droplet_name: str) -> None:
        spec = args.spec
        key_resources: list[pulumi.Resource] = []
        if args.ssh_keys is not None:
            self.ssh_keys = list(args.ssh_keys)
            key_resources = list(args.key_resources or [])
        else:
            self.ssh_keys = list(spec.ssh_key_ids)
            if spec.ssh_public_key is not None:
                # Recognised by the id the stack's last `up` recorded (components/account.py), not by
                # its name: a droplet_name change renames the key in place instead of deleting it.
                on_account = ssh_key_on_account(spec.ssh_public_key, droplet_base_name(spec, args.stack))
                if on_account.upload:
                    key_resources.append(
                        do.SshKey(f"{name}-key", name=on_account.name, public_key=spec.ssh_public_key, opts=child)
                    )
                # The fingerprint as text, not the SshKey's output: the droplet's ssh_keys
                # (ForceNew) stay the same whoever uploaded the key.
                self.ssh_keys.append(on_account.fingerprint)
        self.key_resources = key_resources
        # The stack's and project's tags: the live read (components/account.py) finds the stack's
        # own droplets by them, never another stack's of the same name.
        tags = sorted({"plumber-hosting", stack_tag(args.stack), project_tag(pulumi.get_project()), *spec.tags})
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
                parent=self, protect=spec.protect, depends_on=[*key_resources, *(args.after or [])],
                # A droplet that exists keeps the image it was made from unless the stack config names one:
                # a new default image (debian-12-x64 -> debian-13-x64) must not replace a server. The engine
                # sets an ignored input back to its old value before Check and Diff (pulumi/pulumi
                # pkg/resource/deploy/step_generator.go:1264-1269, processIgnoreChanges :3074-3096) and passes
                # the list to the provider's Diff (:2974-2992); the state's `image` is what the droplet was
                # made with (Read never sets it: digitalocean/droplet/resource_droplet.go sets it only on
                # import, :558-561). A new droplet has no old value: it gets spec.image.
                ignore_changes=None if image_is_explicit(spec) else ["image"],
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
        # As every command (components/fleet.py runs_on): the droplet's identity, checked by the preamble.
        script = pulumi.Output.all(self.identity, self.droplet.id, self.droplet.ipv6_address).apply(
            lambda v: on_droplet(
                remote_script(render("scripts/check-ipv6.sh.j2", address=v[2], timeout=IPV6_TIMEOUT)), v[0], v[1]
            )
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
        self.ready.append(check)
        return check.stdout.apply(lambda out: (out or "").strip().splitlines()[-1] if (out or "").strip() else "")


"""The servers that serve the apps: one, or ``replicas`` identical ones.

Each replica gets its own Server -> Provision -> Site -> PlumberApp(s) ->
Rotation chain. The first replica's components keep the names a single-server
stack has always had (``server``, ``provision``, ``site``, ``<app>``), so a
stack that stays at one server sees no new names; replica i >= 2 adds
``@<i>`` (``server@2``, ``hello@2``; ``@`` is never part of an app name).

An app's deploy on replica i waits for the same app's deploy on replica i-1:
a release rolls across the servers one at a time, each health-gated by its
deploy script, and a release that fails on one server stops there while the
others keep serving the old one. Likewise droplet i waits for replica i-1's
rotation: a droplet change (a resize powers the droplet off) reaches the next
droplet only once the previous one serves again, and a new stack's droplets
are built one after another; a resize first takes the droplet out of the
rotation (``resize_drain``). With a reserved IP, the IP moves to the droplet
only once it serves (``Server.serve_at_reserved_ip``). Nothing a replica declares depends on the
number of replicas, so adding or removing one leaves the others untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
from pulumi_command import remote

from components.app import PlumberApp, PlumberAppArgs
from components.config import StackSpec
from components.droplet_rules import LiveDroplet
from components.loadbalancer import LoadBalancer
from components.network import Network
from components.provision import Provision, ProvisionArgs
from components.remote_script import on_droplet, script_command
from components.render import remote_script
from components.rotation import Rotation, RotationArgs, leave_script, rotation_token
from components.server import Server, ServerArgs, droplet_base_name, droplet_names
from components.site import Site, SiteArgs, base_url


def runs_on(
    identity: pulumi.Input[str] | None, droplet_id: pulumi.Input[str] | None = None
) -> list[pulumi.ResourceTransformation]:
    """Makes the server's identity part of every remote command declared under a component.

    A droplet replaced in place of another (a new id) must get every command again:
    with the droplet's id in the command text, a new droplet changes every command's
    ``create``/``update``, and pulumi-command then runs ``update`` on the new server
    in place (provider/pkg/provider/remote/commandController.go, v1.2.1 ``Update``:
    only a ``triggers`` change replaces, and a replacement would run the old
    resource's ``delete`` over the connection, i.e. on the new server, after the create).
    The commands reach a droplet at its own address (components/server.py), and
    ``droplet_id`` goes into the script's environment too: the preamble refuses to
    run on any other droplet (components/remote_script.py ``on_droplet``).
    A CopyToRemote has no script to carry it: its ``triggers`` get the identity,
    so a new droplet gets the files again (its delete removes nothing).
    """
    if identity is None:
        return []

    def transform(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        props = dict(args.props)
        if args.type_ == "command:remote:Command":
            for op in ("create", "update"):
                if props.get(op) is not None:
                    props[op] = pulumi.Output.all(props[op], identity, droplet_id).apply(
                        lambda v: on_droplet(v[0], v[1], v[2])
                    )
        elif args.type_ == "command:remote:CopyToRemote":
            props["triggers"] = pulumi.Output.all(props.get("triggers") or [], identity).apply(
                lambda v: [*v[0], v[1]]
            )
        else:
            return None
        return pulumi.ResourceTransformationResult(props, args.opts)

    return [transform]


def resize_drain(
    spec: StackSpec, index: int, live: LiveDroplet | None, private_key: pulumi.Output[str], after: list[pulumi.Resource]
) -> remote.Command | None:
    """Behind the load balancer: the droplet leaves the rotation before a resize powers it off.

    The provider resizes a droplet by powering it off (a hard power-off, no graceful shutdown),
    resizing, and powering it on (digitalocean/droplet/resource_droplet.go
    ``resourceDigitalOceanDropletUpdate``, ``d.HasChange("size")``: PowerOff, Resize, PowerOn). Left
    in the rotation, the load balancer would keep sending it requests until its health checks
    fail. So the droplet's update depends on this command, which runs the rotation's own leave
    script (drained: out of /healthz, then the load balancer's failed checks) over the droplet's
    address as it is now (read before anything is declared), on that droplet only (its id).
    After the resize the rotation's join runs again (it names the size): back in service before
    the next droplet changes.

    Its text holds the leave script only while the live droplet's size differs from the
    config's, i.e. in the `up` that resizes it; otherwise it has no create or update, and
    pulumi-command then runs nothing, not even a connection (commandController.go ``Create`` and
    ``Update``, v1.2.1: nothing to run when both are nil). Its next change (the size matches
    again, or a new droplet's address) is such an empty update: it can never drain a droplet
    that is not being resized. None: no load balancer, or no droplet yet (nothing to drain).
    """
    if not spec.load_balanced or live is None or not live.ipv4_address:
        return None
    resizing = bool(live.size) and live.size != spec.size
    text: str | None = None
    if resizing:
        script = remote_script(leave_script(spec, rotation_token(replica_name("rotation", index))))
        text = on_droplet(script, f"droplet {live.id}, leaving the rotation to resize {live.size} -> {spec.size}",
                          live.id)
    return remote.Command(
        f"{replica_name('rotation', index)}-resize-leave",
        connection=remote.ConnectionArgs(
            host=live.ipv4_address, user="root", port=22, private_key=private_key,
            dial_error_limit=30, per_dial_timeout=15,
        ),
        create=text,
        update=text,
        add_previous_output_in_env=False,
        logging=remote.Logging.STDOUT_AND_STDERR,
        opts=pulumi.ResourceOptions(depends_on=after),
    )


def replica_name(base: str, index: int) -> str:
    """A component's name on replica `index` (1-based)."""
    return base if index == 1 else f"{base}@{index}"


@dataclass
class Replica:
    index: int
    server: Server
    provision: Provision
    site: Site
    url: pulumi.Output[str]
    apps: dict[str, PlumberApp] = field(default_factory=dict)
    rotation: Rotation | None = None
    assignment: pulumi.Resource | None = None  # the reserved IP's, made once the replica serves
    on_server: list[pulumi.ResourceTransformation] = field(default_factory=list)


def build_replicas(
    spec: StackSpec,
    *,
    base_dir: Path,
    private_key: pulumi.Output[str],
    stack: str,
    front: LoadBalancer | None,
    network: Network | None = None,
    outside_vpc: bool = False,
    live_droplets: Sequence[LiveDroplet] = (),
) -> list[Replica]:
    """``outside_vpc``: the (only) droplet predates the stack's VPC and stays out of it.
    ``live_droplets``: the stack's droplets as the account has them now (components/account.py)."""
    replicas: list[Replica] = []
    base = droplet_base_name(spec, stack)
    by_name = {d.name: d for d in live_droplets}
    for i, droplet_name in enumerate(droplet_names(spec, base) or [None] * spec.replica_count, start=1):
        previous = replicas[-1] if replicas else None
        # A droplet change (a resize powers it off) waits until the previous replica
        # is back in the rotation: one droplet out of service at a time.
        after: list[pulumi.Resource] = [previous.rotation.command] if previous is not None and previous.rotation else []
        # The first replica's droplet may still carry the one-server name (it is renamed in place).
        live = by_name.get(droplet_name or "") or (by_name.get(base) if i == 1 else None)
        drain = resize_drain(spec, i, live, private_key, after)
        server = Server(
            replica_name("server", i),
            ServerArgs(
                spec=spec, private_key=private_key, stack=stack, replica=i, front=front,
                vpc=network.vpc if network is not None and not outside_vpc else None,
                ssh_keys=replicas[0].server.ssh_keys if replicas else None,
                key_resources=replicas[0].server.key_resources if replicas else None,
                after=[*after, *([drain] if drain is not None else [])] or None,
            ),
        )
        droplet_id = server.droplet.id if server.droplet is not None else None
        on_server = runs_on(server.identity, droplet_id)
        provision = Provision(
            replica_name("provision", i),
            ProvisionArgs(spec=spec, connection=server.connection, sudo=server.sudo),
            # Not depends_on=[server]: that waits for every child of it, the reserved IP's
            # assignment too, which itself waits for this replica to serve.
            opts=pulumi.ResourceOptions(depends_on=server.ready or [server], transformations=on_server),
        )
        # The URL users reach: the load balancer's, else this server's.
        address = front.ip if front is not None else server.address
        url = address.apply(lambda a: base_url(spec, a))
        site = Site(
            replica_name("site", i),
            SiteArgs(
                spec=spec, connection=server.connection, url=url, sudo=server.sudo,
                # behind the reserved IP, which moves to this droplet only once it serves
                defer_certificate=server.reserved_ip is not None,
            ),
            opts=pulumi.ResourceOptions(depends_on=[provision], transformations=on_server),
        )
        replica = Replica(index=i, server=server, provision=provision, site=site, url=url)
        for app in spec.apps:
            app_after: list[pulumi.Resource] = [site]
            if previous is not None:
                app_after.append(previous.apps[app.name])  # roll: one replica at a time
            replica.apps[app.name] = PlumberApp(
                replica_name(app.name, i),
                PlumberAppArgs(
                    spec=spec, app=app, base_dir=base_dir, connection=server.connection, base_url=url,
                    sudo=server.sudo,
                ),
                opts=pulumi.ResourceOptions(depends_on=app_after, transformations=on_server),
            )
        # The rotation also names the droplet's size: after a resize (in place, a power cycle)
        # it runs again and so waits until the server serves again before the next one changes.
        resized = (
            runs_on(pulumi.Output.concat(server.identity, ", size ", spec.size), droplet_id)
            if server.identity is not None
            else []
        )
        replica.rotation = Rotation(
            replica_name("rotation", i),
            RotationArgs(spec=spec, connection=server.connection, sudo=server.sudo),
            opts=pulumi.ResourceOptions(depends_on=[site, *replica.apps.values()], transformations=resized),
        )
        # Reserved-IP mode: the IP moves to a (new) droplet only once it serves: provisioned, its
        # apps deployed and health-checked by the rotation (components/server.py).
        replica.assignment = server.serve_at_reserved_ip([replica.rotation.command])
        replica.on_server = on_server
        replicas.append(replica)
    return replicas


def certify(spec: StackSpec, replicas: list[Replica], after: list[pulumi.Resource]) -> None:
    """Reserved-IP mode with https: each droplet's certificate, once the reserved IP and the DNS
    records (``after``: an AAAA names the droplet's own IPv6 address, and Let's Encrypt tries IPv6
    first) point at it. HTTP-01 reaches the droplet only through them, so a droplet without a
    certificate yet serves plain HTTP until here. Every later run is certbot's
    --keep-until-expiring no-op."""
    if not spec.host_tls:
        return
    for r in replicas:
        if r.assignment is None:
            continue
        script_command(
            f"{replica_name('site', r.index)}-certificate",
            connection=r.server.connection,
            script=r.site.certificate_script,
            sudo=r.server.sudo,
            opts=pulumi.ResourceOptions(
                parent=r.server, depends_on=[r.site.command, r.assignment, *after], transformations=r.on_server
            ),
        )

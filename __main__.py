"""plumber-hosting: R Plumber APIs on a server, declared per stack.

stack config -> validated model -> components -> rendered templates -> remote commands.
This file only composes.
"""

from pathlib import Path

import pulumi

from components.account import RECORD_OUTPUT, owned_ids, read_live_stack
from components.config import load_spec, private_key_text
from components.dns import Dns, DnsArgs
from components.fleet import build_replicas, certify
from components.loadbalancer import LoadBalancer, LoadBalancerArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
from components.project import Project, ProjectArgs
from components.server import droplet_base_name

BASE_DIR = Path(__file__).resolve().parent

spec = load_spec(BASE_DIR)  # every config error is raised here, before any resource
stack = pulumi.get_stack()
droplet_name = droplet_base_name(spec, stack)
# The stack as it is on the account: a protected droplet a change would replace is an error here; an
# existing droplet keeps its image and (one server) its VPC; the region's default VPC.
live = (
    read_live_stack(spec, stack=stack, project=pulumi.get_project(), droplet_name=droplet_name)
    if not spec.existing_host
    else None
)

# Every droplet lives in the stack's VPC from the first `up` (replicas changes never move one).
network = Network("network", NetworkArgs(spec=spec, droplet_name=droplet_name, live=live)) if live is not None else None
# With replicas >= 2: a load balancer in front, TLS ends there.
front = (
    LoadBalancer("lb", LoadBalancerArgs(spec=spec, droplet_name=droplet_name, vpc=network.vpc, tag=live.lb_tag))
    if spec.load_balanced and network is not None and live is not None
    else None
)

replicas = build_replicas(
    spec,
    base_dir=BASE_DIR,
    private_key=pulumi.Output.secret(private_key_text(spec, BASE_DIR)),
    stack=stack,
    front=front,
    network=network,
    outside_vpc=live.outside_vpc if live is not None else False,
    live_droplets=live.droplets if live is not None else [],
)
first = replicas[0]
address = front.ip if front is not None else first.server.address

dns = (
    Dns(
        "dns",
        DnsArgs(
            domain=spec.domain,
            hostname=spec.hostname,
            ipv4=address,
            ipv6=front.ipv6 if front is not None else first.server.ipv6_address,
        ),
        # The name moves (to the load balancer, or an AAAA to a new droplet's own address) once every
        # replica serves: a build that fails leaves it where it was.
        opts=pulumi.ResourceOptions(depends_on=[r.rotation for r in replicas if r.rotation]),
    )
    if spec.domain is not None and spec.manage_dns
    else None
)
certify(spec, replicas, after=[dns] if dns is not None else [])

if not spec.existing_host:
    droplets = [r.server.droplet for r in replicas if r.server.droplet is not None]
    if spec.alerts is not None:
        Monitoring(
            "monitoring",
            MonitoringArgs(
                spec=spec,
                alerts=spec.alerts,
                droplet_name=droplet_name,
                app_urls={name: a.url for name, a in first.apps.items()},
                droplet_ids=[d.id for d in droplets],
            ),
        )
    Project(
        "project",
        ProjectArgs(
            stack=stack,
            droplet_name=droplet_name,
            resources=[
                *[u for r in replicas for u in r.server.project_urns],
                *([front.balancer.load_balancer_urn] if front is not None else []),
            ],
        ),
    )

pulumi.export("ip", address)
pulumi.export("url", first.url)
pulumi.export("ssh", first.server.ssh_command)
pulumi.export(
    "apps",
    {
        name: {"url": a.url, "docs": a.docs_url, "logs": a.logs, "release": a.release}
        for name, a in first.apps.items()
    },
)
if len(replicas) > 1:
    pulumi.export("servers", [{"ip": r.server.address, "ssh": r.server.ssh_command} for r in replicas])
if network is not None:  # read back by the next run (components/account.py stack_record)
    key = first.server.key_resources[0] if first.server.key_resources else None
    lb_tag = front.tag.name if front is not None else ""
    pulumi.export(RECORD_OUTPUT, owned_ids(key, network.vpc, network.region_default, lb_tag))

"""The front of a scaled-out stack (``replicas >= 2``): a DigitalOcean load
balancer in the stack's VPC, TLS terminated there with a Let's Encrypt certificate,
and the cloud firewall that lets only it reach the droplets' port 80.

Droplets join by carrying the component's tag (``droplet_tag`` on the load
balancer, ``tags`` on the firewall), so adding or removing a replica changes
neither the load balancer nor the firewall. The load balancer sends a request
to a droplet only while its ``/healthz`` answers 200 (see
``templates/usr/local/lib/plumber-hosting/healthz.j2``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as do

from components.config import StackSpec

TYPE = "plumber-hosting:index:LoadBalancer"

HEALTH_PATH = "/healthz"
HEALTH_INTERVAL = 10  # seconds between the load balancer's checks
HEALTH_TIMEOUT = 5
HEALTHY_THRESHOLD = 3
UNHEALTHY_THRESHOLD = 3
# How long after /healthz starts failing the load balancer stops sending requests.
DRAIN_SECONDS = HEALTH_INTERVAL * UNHEALTHY_THRESHOLD + HEALTH_TIMEOUT
STICKY_COOKIE = "plumber_lb"
ANYWHERE = ["0.0.0.0/0", "::/0"]


def certificate_name(droplet_name: str, fqdn: str) -> str:
    """Unique per domain, so a new domain's certificate can exist beside the old one."""
    return f"{droplet_name}-{fqdn.replace('.', '-')}"[:255]


def idle_timeout(spec: StackSpec) -> int:
    """Long enough for the slowest app's proxy timeout (the range DigitalOcean accepts)."""
    longest = max((a.timeout for a in spec.apps), default=60)
    return min(max(longest + 5, 60), 600)


def outbound_rules() -> list[do.FirewallOutboundRuleArgs]:
    """Droplets may reach anything (apt, CRAN, ACME)."""
    return [
        do.FirewallOutboundRuleArgs(protocol=p, port_range="1-65535" if p != "icmp" else None,
                                    destination_addresses=ANYWHERE)
        for p in ("tcp", "udp", "icmp")
    ]


@dataclass
class LoadBalancerArgs:
    spec: StackSpec
    droplet_name: str
    vpc: do.Vpc  # the stack's own (components/network.py), which its droplets are in from the start
    tag: str  # the droplets' tag (components/droplet_rules.py lb_tag_name: new, recorded or an earlier version's)


class LoadBalancer(pulumi.ComponentResource):
    vpc: do.Vpc
    tag: do.Tag
    certificate: do.Certificate | None
    balancer: do.LoadBalancer
    firewall: do.Firewall
    ip: pulumi.Output[str]
    ipv6: pulumi.Output[str] | None

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        spec = args.spec
        base = args.droplet_name
        child = pulumi.ResourceOptions(parent=self)

        self.vpc = args.vpc
        # Unique per stack: a tag is account-wide, and the load balancer sends requests to every droplet with it.
        self.tag = do.Tag(f"{name}-tag", name=args.tag, opts=child)

        rules = [
            do.LoadBalancerForwardingRuleArgs(entry_port=80, entry_protocol="http", target_port=80, target_protocol="http"),
        ]
        self.certificate = None
        if spec.https is not None:
            assert spec.fqdn is not None  # validated: https needs a domain
            self.certificate = do.Certificate(
                f"{name}-certificate",
                name=certificate_name(base, spec.fqdn),
                type="lets_encrypt",
                domains=[spec.fqdn],
                opts=child,
            )
            rules.append(
                do.LoadBalancerForwardingRuleArgs(
                    entry_port=443, entry_protocol="https", target_port=80, target_protocol="http",
                    certificate_name=self.certificate.name,
                )
            )
        sticky = any(a.sticky for a in spec.apps)
        self.balancer = do.LoadBalancer(
            f"{name}-balancer",
            name=f"{base}-lb",
            region=spec.region,
            vpc_uuid=self.vpc.id,
            droplet_tag=self.tag.name,
            size_unit=1,
            network_stack="DUALSTACK" if spec.ipv6 else "IPV4",
            forwarding_rules=rules,
            healthcheck=do.LoadBalancerHealthcheckArgs(
                protocol="http",
                port=80,
                path=HEALTH_PATH,
                check_interval_seconds=HEALTH_INTERVAL,
                response_timeout_seconds=HEALTH_TIMEOUT,
                healthy_threshold=HEALTHY_THRESHOLD,
                unhealthy_threshold=UNHEALTHY_THRESHOLD,
            ),
            redirect_http_to_https=spec.https is not None,
            sticky_sessions=do.LoadBalancerStickySessionsArgs(
                type="cookies", cookie_name=STICKY_COOKIE, cookie_ttl_seconds=3600
            )
            if sticky
            else do.LoadBalancerStickySessionsArgs(type="none"),
            http_idle_timeout_seconds=idle_timeout(spec),
            # The stack's own DNS record points at the load balancer (components/dns.py).
            disable_lets_encrypt_dns_records=True,
            opts=child,
        )
        self.firewall = do.Firewall(
            f"{name}-firewall",
            name=f"{base}-fw",
            tags=[self.tag.name],
            inbound_rules=[
                do.FirewallInboundRuleArgs(protocol="tcp", port_range="22", source_addresses=spec.admin_cidrs),
                do.FirewallInboundRuleArgs(protocol="tcp", port_range="80", source_load_balancer_uids=[self.balancer.id]),
                do.FirewallInboundRuleArgs(protocol="icmp", source_addresses=ANYWHERE),
            ],
            outbound_rules=outbound_rules(),
            opts=child,
        )
        self.ip = self.balancer.ip
        self.ipv6 = self.balancer.ipv6 if spec.ipv6 else None
        self.register_outputs(
            {
                "ip": self.ip,
                "tag": self.tag.name,
                "https": spec.https is not None,
                "sticky": sticky,
                "health_path": HEALTH_PATH,
            }
        )

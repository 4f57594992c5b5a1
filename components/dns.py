"""DNS records in a DigitalOcean-managed zone pointing at the server."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as do

from components.remote_script import child_options

TYPE = "plumber-hosting:index:Dns"


@dataclass
class DnsArgs:
    domain: str
    hostname: str
    ipv4: pulumi.Input[str]
    ipv6: pulumi.Input[str] | None = None
    ttl: int = 300


class Dns(pulumi.ComponentResource):
    def __init__(self, name: str, args: DnsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        child = child_options(self, opts)  # waits for what the component waits for
        self.a = do.DnsRecord(
            f"{name}-a", domain=args.domain, name=args.hostname, type="A", value=args.ipv4, ttl=args.ttl, opts=child
        )
        self.aaaa = None
        if args.ipv6 is not None:
            self.aaaa = do.DnsRecord(
                f"{name}-aaaa", domain=args.domain, name=args.hostname, type="AAAA", value=args.ipv6, ttl=args.ttl,
                opts=child,
            )
        fqdn = args.domain if args.hostname == "@" else f"{args.hostname}.{args.domain}"
        self.fqdn = fqdn
        self.register_outputs({"fqdn": fqdn})

"""The front door: the nginx server block, `/` forwarding and the TLS certificate."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.config import StackSpec
from components.remote_script import child_options, owner_token, script_command
from components.render import render

TYPE = "plumber-hosting:index:Site"


def base_url(spec: StackSpec, address: str) -> str:
    if spec.fqdn is not None:
        return f"{'https' if spec.https else 'http'}://{spec.fqdn}"
    return f"http://{address}"


def site_files(spec: StackSpec) -> dict[str, str]:
    """The rendered server block: final, and (with https) the pre-certificate one.

    Behind a load balancer TLS ends at the load balancer: the server block is plain HTTP."""
    forward_path = spec.app(spec.forward_root).url_path if spec.forward_root else None
    common = {"fqdn": spec.fqdn, "ipv6": spec.ipv6 and not spec.existing_host, "forward_path": forward_path}
    return {
        "site": render("etc/nginx/sites-available/plumber-hosting.j2", tls=spec.host_tls, **common),
        "site_plain": render("etc/nginx/sites-available/plumber-hosting.j2", tls=False, **common),
    }


def site_script(spec: StackSpec, token: str, *, defer_certificate: bool = False) -> str:
    """``defer_certificate``: a server without its certificate yet serves plain HTTP and leaves
    certbot to a later run of the whole script (HTTP-01 reaches it only once its address does)."""
    https = spec.https if spec.host_tls else None  # certbot on the server itself
    return render(
        "scripts/site.sh.j2",
        token=token,
        https=https is not None,
        defer_certificate=defer_certificate and https is not None,
        fqdn=spec.fqdn,
        email=https.email if https else None,
        acme_server=https.acme_server if https else None,
        acme_ca_cert=render("etc/plumber-hosting/acme-ca.pem.j2", pem=https.acme_ca_cert)
        if https and https.acme_ca_cert
        else None,
        certbot_dropin=render("etc/systemd/system/certbot.service.d/plumber-hosting.conf.j2"),
        security_headers=render("etc/nginx/plumber-hosting/security-headers.conf.j2", tls=spec.https is not None),
        renew_hook=render("etc/letsencrypt/renewal-hooks/deploy/plumber-hosting-reload-nginx.j2"),
        **site_files(spec),
    )


@dataclass
class SiteArgs:
    spec: StackSpec
    connection: remote.ConnectionArgs
    url: pulumi.Input[str]
    sudo: bool = False
    # Behind a reserved IP that reaches this server only once it serves (components/server.py):
    # the certificate comes after that (components/fleet.py, "<site>-certificate").
    defer_certificate: bool = False


class Site(pulumi.ComponentResource):
    command: remote.Command

    def __init__(self, name: str, args: SiteArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        token = owner_token(name, site_script(args.spec, ""))
        # The whole script, certbot included: components/fleet.py runs it again once the reserved IP
        # points at the server (defer_certificate).
        self.certificate_script = site_script(args.spec, token)
        self.command = script_command(
            f"{name}-nginx",
            connection=args.connection,
            script=site_script(args.spec, token, defer_certificate=args.defer_certificate),
            delete_script=render("scripts/remove-site.sh.j2", token=token),
            sudo=args.sudo,
            opts=child_options(self, opts),
        )
        self.register_outputs({"domain": args.spec.fqdn, "https": args.spec.https is not None, "url": args.url})


"""plumber-hosting: R Plumber APIs on a server, declared per stack.

stack config -> validated model -> components -> rendered templates -> remote commands.
This file only composes.
"""

from pathlib import Path

import pulumi

from components.app import PlumberApp, PlumberAppArgs
from components.config import load_spec, private_key_text
from components.dns import Dns, DnsArgs
from components.provision import Provision, ProvisionArgs
from components.server import Server, ServerArgs
from components.site import Site, SiteArgs, base_url

BASE_DIR = Path(__file__).resolve().parent

spec = load_spec(BASE_DIR)  # every config error is raised here, before any resource

server = Server(
    "server",
    ServerArgs(
        spec=spec,
        private_key=pulumi.Output.secret(private_key_text(spec, BASE_DIR)),
        stack=pulumi.get_stack(),
    ),
)

if spec.domain is not None and spec.manage_dns:
    Dns("dns", DnsArgs(domain=spec.domain, hostname=spec.hostname, ipv4=server.address, ipv6=server.ipv6_address))

provision = Provision(
    "provision",
    ProvisionArgs(spec=spec, connection=server.connection, sudo=server.sudo),
    opts=pulumi.ResourceOptions(depends_on=[server]),
)

url = server.address.apply(lambda address: base_url(spec, address))
site = Site(
    "site",
    SiteArgs(spec=spec, connection=server.connection, url=url, sudo=server.sudo),
    opts=pulumi.ResourceOptions(depends_on=[provision]),
)

apps = {
    app.name: PlumberApp(
        app.name,
        PlumberAppArgs(
            spec=spec, app=app, base_dir=BASE_DIR, connection=server.connection, base_url=url, sudo=server.sudo
        ),
        opts=pulumi.ResourceOptions(depends_on=[site]),
    )
    for app in spec.apps
}

pulumi.export("ip", server.address)
pulumi.export("url", url)
pulumi.export("ssh", server.ssh_command)
pulumi.export(
    "apps",
    {
        name: {"url": a.url, "docs": a.docs_url, "logs": a.logs, "release": a.release}
        for name, a in apps.items()
    },
)

"""The resource graph a single-server droplet stack declares, shared by the tests
that check it (tests/unit/test_program.py, tests/unit/test_scale_out.py)."""

from __future__ import annotations

from typing import Any

import pulumi

from tests.program import ProgramRun

DO = "digitalocean:index/"
CMD = "command:remote:Command"
COPY = "command:remote:CopyToRemote"

# What a one-server droplet stack declared before scale-out existed: the same
# names, so the same URNs, and so no replacement when an existing stack upgrades.
SINGLE_SERVER = {
    ("plumber-hosting:index:Server", "server"),
    (f"{DO}sshKey:SshKey", "server-key"),
    (f"{DO}droplet:Droplet", "server-droplet"),
    (f"{DO}reservedIp:ReservedIp", "server-ip"),
    (f"{DO}reservedIpAssignment:ReservedIpAssignment", "server-ip-assignment"),
    (f"{DO}firewall:Firewall", "server-firewall"),
    ("plumber-hosting:index:Provision", "provision"),
    (CMD, "provision-server"),
    ("plumber-hosting:index:Site", "site"),
    (CMD, "site-nginx"),
    ("plumber-hosting:index:PlumberApp", "hello"),
    (COPY, "hello-upload"),  # was hello-probe: the code travels outside the state now (issue 13)
    (CMD, "hello-deploy"),
    ("plumber-hosting:index:PlumberApp", "hashing"),
    (COPY, "hashing-upload"),
    (CMD, "hashing-deploy"),
}
# ... with a domain whose DNS the program manages
DNS = {
    ("plumber-hosting:index:Dns", "dns"),
    (f"{DO}dnsRecord:DnsRecord", "dns-a"),
}
# new with scale-out, for every stack
NEW_FOR_EVERY_STACK = {
    ("plumber-hosting:index:Rotation", "rotation"),
    (CMD, "rotation-join"),
    ("plumber-hosting:index:Project", "project"),
    (f"{DO}project:Project", "project-group"),
    # the stack's VPC, from the first `up` (components/network.py)
    ("plumber-hosting:index:Network", "network"),
    (f"{DO}vpc:Vpc", "network-vpc"),
}


def inputs_by_name(run: ProgramRun) -> dict[str, dict[str, Any]]:
    """Each resource's inputs by name; a FileAsset as the path the SDK sends for it
    (pulumi/runtime/rpc.py, serialize_property), so two runs compare by value."""
    return {
        r.name: {k: {"path": v.path} if isinstance(v, pulumi.FileAsset) else v for k, v in r.inputs.items()}
        for r in run.resources
    }

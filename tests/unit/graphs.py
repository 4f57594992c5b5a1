"""The resource graph a single-server droplet stack declares, shared by the tests
that check it (tests/unit/test_program.py, tests/unit/test_scale_out.py)."""

from __future__ import annotations

DO = "digitalocean:index/"
CMD = "command:remote:Command"

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
    (CMD, "hello-probe"),
    (CMD, "hello-deploy"),
    ("plumber-hosting:index:PlumberApp", "hashing"),
    (CMD, "hashing-probe"),
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

"""Provisioning: swap, packages, the plumber user, firewall, sshd and nginx base."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
from pulumi_command import remote

from components.config import StackSpec
from components.remote_script import child_options, script_command
from components.render import render, sha

TYPE = "plumber-hosting:index:Provision"

BASE_PACKAGES = ["nginx", "libnginx-mod-http-js", "ufw", "certbot", "curl", "ca-certificates", "openssl", "iproute2", "psmisc"]
# plumber's optional features, as its documentation describes them, work on a new
# server without the user listing packages (plumber only Suggests these):
# cookies and sessions (base64enc), csv/tsv (readr), yaml, png/jpeg/tiff through
# ragg, svglite, async with promises and future; and renv for apps with an
# htmlwidget needs pandoc: list `htmlwidgets` and `pandoc` per app.
PLUMBER_EXTRAS = ["base64enc", "readr", "yaml", "ragg", "svglite", "future", "promises"]
DISTRO_R = ["r-base-core", "r-cran-plumber", *(f"r-cran-{p}" for p in PLUMBER_EXTRAS)]
# From apt where the release has it (Debian 13: renv 1.1; Debian 12 has none): a
# deploy that needs renv (an renv.lock, a name@version pin) installs it from the
# stack's cran_repo otherwise.
DISTRO_R_OPTIONAL = ["r-cran-renv"]
HEALTHZ_INTERVAL = 2  # seconds between the /healthz checker's passes


def ufw_rules(admin_cidrs: list[str]) -> list[str]:
    """The rules as `ufw show added` prints them."""
    rules: list[str] = []
    if any(ipaddress.ip_network(c).prefixlen == 0 for c in admin_cidrs):
        rules.append("ufw allow 22/tcp")
    else:
        rules += [f"ufw allow from {c} to any port 22 proto tcp" for c in admin_cidrs]
    rules += ["ufw allow 80/tcp", "ufw allow 443/tcp"]
    return rules


def provision_script(spec: StackSpec) -> str:
    droplet = not spec.existing_host
    packages = BASE_PACKAGES + (DISTRO_R if spec.r_version == "distro" else []) + (
        ["unattended-upgrades"] if droplet else []
    )
    return render(
        "scripts/provision.sh.j2",
        swap_gb=spec.swap_gb,
        apt_packages=packages,
        optional_apt_packages=DISTRO_R_OPTIONAL if spec.r_version == "distro" else [],
        r_version=spec.r_version,
        rscript=spec.rscript,
        cran_repo=spec.cran_repo,
        r_packages="c(" + ", ".join(f"'{p}'" for p in ["plumber", *PLUMBER_EXTRAS]) + ")",
        run_api_r=render("usr/local/lib/plumber-hosting/run-api.R.j2"),
        nginx_http_conf=render("etc/nginx/conf.d/plumber-hosting.conf.j2", behind_lb=spec.load_balanced),
        api_key_js=render("etc/nginx/plumber-hosting/api-key.js.j2"),
        sshd_conf=render("etc/ssh/sshd_config.d/plumber-hosting.conf.j2"),
        # SSH open to the world keeps OpenSSH's per-source penalties for everyone.
        sshd_penalties_conf=None
        if spec.ssh_open_to_world
        else render("etc/ssh/sshd_config.d/plumber-hosting-penalties.conf.j2", cidrs=spec.admin_cidrs),
        unattended_upgrades=droplet,
        auto_upgrades=render("etc/apt/apt.conf.d/20auto-upgrades.j2"),
        ufw_rules=ufw_rules(spec.admin_cidrs),
        healthz_script=render("usr/local/lib/plumber-hosting/healthz.j2", interval=HEALTHZ_INTERVAL),
        healthz_unit=render("etc/systemd/system/plumber-hosting-healthz.service.j2"),
    )


@dataclass
class ProvisionArgs:
    spec: StackSpec
    connection: remote.ConnectionArgs
    sudo: bool = False


class Provision(pulumi.ComponentResource):
    command: remote.Command

    def __init__(self, name: str, args: ProvisionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        script = provision_script(args.spec)
        self.command = script_command(
            f"{name}-server",
            connection=args.connection,
            script=script,
            sudo=args.sudo,
            opts=child_options(self, opts),
        )
        self.register_outputs({"script_sha": sha(script)})

"""One Plumber API: its release, R packages, systemd workers and nginx route."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
from pulumi_command import remote

from components.bundle import make_bundle
from components.config import AppSpec, StackSpec, resolve_path
from components.packages import has_lockfile, r_named_vector, r_vector, split_pin
from components.remote_script import child_options, owner_token, script_command
from components.render import render, sha

TYPE = "plumber-hosting:index:PlumberApp"


def env_file(app: AppSpec) -> str:
    """The app's EnvironmentFile: env and secret_env (secret: only ever on stdin)."""
    return render("etc/plumber-hosting/env/api.env.j2", name=app.name, env={**app.env, **app.secret_env})


def release_present(probe_stdout: str | None) -> bool:
    """The probe's answer; anything but a clear "present" (unknown in a preview) uploads the code."""
    lines = (probe_stdout or "").strip().splitlines()
    return bool(lines) and lines[-1].strip() == "present"


def deploy_script(spec: StackSpec, app: AppSpec, release: str, token: str, renv: bool = False) -> str:
    """`renv`: the app's source holds an renv.lock (restored at deploy)."""
    ports = app.ports
    names = [split_pin(p)[0] for p in app.packages if "@" not in p]
    pins = dict(split_pin(p) for p in app.packages if "@" in p)
    upstream = "etc/nginx/plumber-hosting/upstreams/api.conf.j2"
    common = {
        "name": app.name,
        "sticky": app.sticky,
        "path": app.url_path,
        "allow_cidrs": app.allow_cidrs,
        "key_digests": app.auth.digests if app.auth else [],
        "rate": app.rate_limit.rate if app.rate_limit else None,
    }
    upstreams = {"a": render(upstream, ports=ports[: app.workers], **common)}
    if app.workers == 1:
        upstreams["b"] = render(upstream, ports=ports[1:2], **common)
    return render(
        "scripts/deploy-app.sh.j2",
        name=app.name,
        release=release,
        token=token,
        ports=ports,
        workers=app.workers,
        health_path=app.health_path,
        start_timeout=app.start_timeout,
        drain_timeout=min(app.timeout + 5, 120),
        keep_releases=app.keep_releases,
        packages=r_vector(names) if names else None,
        pins=r_named_vector(pins) if pins else None,  # type: ignore[arg-type]
        system_packages=app.system_packages,
        renv=renv,
        renv_repos=app.renv_repos,
        cran_repo=spec.cran_repo,
        rscript=spec.rscript,
        unit_file=render(
            "etc/systemd/system/plumber-api@.service.j2",
            name=app.name,
            rscript=spec.rscript,
            docs=app.docs,
            memory_max=app.memory_max,
        ),
        upstreams=upstreams,
        location=render(
            "etc/nginx/plumber-hosting/locations/api.conf.j2",
            name=app.name,
            path=app.url_path,
            workers=app.workers,
            timeout=app.timeout,
            max_body=app.max_body,
            sticky=app.sticky,
            allow_cidrs=app.allow_cidrs,
            auth=app.auth is not None,
            rate_burst=app.rate_limit.burst_or_default if app.rate_limit else None,
            # Behind the load balancer the scheme the client used comes from it (conf.d map).
            forwarded_proto="$plumber_forwarded_proto" if spec.load_balanced else "$scheme",
        ),
    )


@dataclass
class PlumberAppArgs:
    spec: StackSpec
    app: AppSpec
    base_dir: Path
    connection: remote.ConnectionArgs
    base_url: pulumi.Input[str]
    sudo: bool = False


class PlumberApp(pulumi.ComponentResource):
    command: remote.Command
    url: pulumi.Output[str]

    def __init__(self, name: str, args: PlumberAppArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        app = args.app
        source = resolve_path(args.base_dir, app.source)
        bundle = make_bundle(source, env_file(app))
        renv = has_lockfile(source)
        token = owner_token(name, deploy_script(args.spec, app, bundle.release, "", renv))
        script = deploy_script(args.spec, app, bundle.release, token, renv)
        # Asks the server whether the release is already there. Its script
        # carries a hash of the deploy script (which names the release), so it
        # runs again whenever the deploy does for anything but an env change,
        # and a release it saw can only be the current one, which is kept.
        self.probe = script_command(
            f"{name}-probe",
            connection=args.connection,
            script=render(
                "scripts/probe-release.sh.j2",
                name=app.name,
                release=bundle.release,
                deploy=sha(script),
            ),
            sudo=args.sudo,
            opts=child_options(self, opts),
        )
        stdin = self.probe.stdout.apply(lambda out: bundle.env_payload if release_present(out) else bundle.payload)
        self.command = script_command(
            f"{name}-deploy",
            connection=args.connection,
            script=script,
            delete_script=render("scripts/remove-app.sh.j2", name=app.name, token=token),
            sudo=args.sudo,
            stdin=pulumi.Output.secret(stdin),
            opts=child_options(self, opts),
        )
        self.release = bundle.release
        self.url = pulumi.Output.concat(args.base_url, app.url_path, "/")
        self.docs_url = pulumi.Output.concat(self.url, "__docs__/") if app.docs else None
        self.logs = f"journalctl -u 'plumber-{app.name}@*' -f"
        self.register_outputs(
            {
                "name": app.name,
                "workers": app.workers,
                "memory_max_mb": app.memory_max_mb,
                "release": bundle.release,
                "url": self.url,
            }
        )

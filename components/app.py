"""One Plumber API: its release, R packages, systemd workers and nginx route."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi_command import remote

from components.bundle import Bundle, make_bundle
from components.config import AppSpec, StackSpec, resolve_path
from components.packages import has_lockfile, r_named_vector, r_vector, split_pin
from components.remote_script import child_options, owner_token, script_command
from components.render import render

TYPE = "plumber-hosting:index:PlumberApp"
# Where <app>-upload puts an app's bundles on the server: relative, so under the
# home directory of the connection's user (the SFTP server resolves a relative
# path against the directory sshd starts it in, the user's home), which that
# user can write to whether or not it is root.
UPLOADS = ".plumber-hosting/uploads"


def env_file(app: AppSpec) -> str:
    """The app's EnvironmentFile: env and secret_env (secret: only ever on stdin)."""
    return render("etc/plumber-hosting/env/api.env.j2", name=app.name, env=app.env, secret_env=app.secret_env)


def upload_path(app: AppSpec, bundle: Bundle) -> str:
    """The bundle's remote path, relative to the connection user's home."""
    return f"{UPLOADS}/{app.name}/{bundle.release}.tar"


def deploy_script(
    spec: StackSpec,
    app: AppSpec,
    bundle: Bundle,
    token: str,
    *,
    upload_user: str,
    upload_resource: str,
    renv: bool = False,
) -> str:
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
    # One upstream for good: with one worker the spare port is its backup server.
    spare = ports[1] if app.workers == 1 else None
    upstreams = {"a": render(upstream, ports=ports[: app.workers], spare=spare, **common)}
    return render(
        "scripts/deploy-app.sh.j2",
        name=app.name,
        release=bundle.release,
        bundle_sha256=bundle.sha256,
        upload_user=upload_user,
        upload_path=upload_path(app, bundle),
        upload_resource=upload_resource,
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
        bundle = make_bundle(source, args.base_dir, app.include)
        user = args.connection.user or "root"  # pulumi-command v1.2.1 default (remote/connection.go:57)
        if not isinstance(user, str):
            raise TypeError("PlumberApp: the connection's user must be known when the program runs")
        # The code travels outside the state: CopyToRemote records the
        # FileAsset's path and SHA-256 (its outputs are its inputs,
        # copy.go:84-86) and copies on create, and on update only when that
        # hash or remotePath changed (copyController.go:148); delete removes
        # nothing on the server (no CustomDelete, so go-provider's default
        # Delete, infer/resource.go:1484-1497, does nothing). A file source and
        # a remotePath that does not exist yet: the file lands at remotePath,
        # its parent directories created (copyController.go:256-266; new in
        # 1.2.1, which requirements.txt pins).
        # Another server (a droplet recreated with a new address, another
        # user's home) is a new copy: a connection change alone updates
        # without copying (copyController.go:148), so the server's identity
        # goes into `triggers`, which replaces the resource when it changes
        # (replaceOnChanges, copy.go:38): the new one copies on create, the
        # old one's delete does nothing.
        # Like every child it runs once its component may: the SDK registers
        # a component after its depends_on (pulumi/runtime/resource.py:212-216)
        # and a child after its parent's URN (resource.py:244-247), so after
        # the site, and on replica i after this app on replica i-1. It touches
        # nothing that serves.
        self.upload = remote.CopyToRemote(
            f"{name}-upload",
            connection=args.connection,
            source=pulumi.FileAsset(bundle.path),
            remote_path=upload_path(app, bundle),
            triggers=[args.connection.host, args.connection.port or 22, user],
            opts=pulumi.ResourceOptions(parent=self),
        )
        options: dict[str, Any] = {
            "upload_user": user, "upload_resource": f"{name}-upload", "renv": has_lockfile(source),
        }
        token = owner_token(name, deploy_script(args.spec, app, bundle, "", **options))
        self.command = script_command(
            f"{name}-deploy",
            connection=args.connection,
            script=deploy_script(args.spec, app, bundle, token, **options),
            delete_script=render(
                "scripts/remove-app.sh.j2", name=app.name, token=token, upload_user=user, uploads=UPLOADS
            ),
            sudo=args.sudo,
            # The env file only: it holds secret_env. The deploy script reads
            # all of it, so does the delete script (which pulumi-command hands
            # the last stdin too, commandOutputs.go:73-75).
            stdin=pulumi.Output.secret(env_file(app)),
            opts=pulumi.ResourceOptions.merge(
                child_options(self, opts), pulumi.ResourceOptions(depends_on=[self.upload])
            ),
        )
        self.bundle = bundle
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

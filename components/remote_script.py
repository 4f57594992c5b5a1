"""One idempotent script run on the server as a Pulumi remote command."""

from __future__ import annotations

import pulumi
from pulumi_command import remote

from components.render import DROPLET_ENV, remote_script, sha


def on_droplet(text: str, identity: str, droplet_id: str | None) -> str:
    """A command's text for one droplet: its identity as the first line, and its id for the preamble.

    The first line (``# plumber-hosting: on droplet N``) makes the text change with the droplet
    (components/fleet.py ``runs_on``). A script made by ``remote_script`` also gets
    ``PLUMBER_HOSTING_DROPLET=N`` in front of its ``bash``: the preamble
    (templates/scripts/lib.sh.j2) compares it with the droplet's metadata id and refuses to
    run on any other droplet. Existing-host mode has no droplet and so no check.
    """
    if droplet_id is not None and text.startswith("bash -c "):
        text = f"{DROPLET_ENV}={int(droplet_id)} {text}"
    return f"# plumber-hosting: on {identity}\n{text}"


def child_options(parent: pulumi.Resource, opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    """Options for a component's child: parented, and depending on what the component depends on.

    The ordering already holds without the explicit edge: the Python SDK registers
    a resource only after its parent's URN resolves (pulumi 3.272.0
    ``sdk/python/lib/pulumi/runtime/resource.py:244-247``), and a component's URN
    resolves only after its own ``depends_on`` (``resource.py:212-216``). Copying
    ``depends_on`` records the edge on the child itself, so the state's
    dependencies (and the delete order derived from them) name it.
    """
    return pulumi.ResourceOptions(parent=parent, depends_on=opts.depends_on if opts else None)


def owner_token(name: str, script_without_token: str) -> str:
    """Ties what a command deploys on the server to this resource.

    The create script records the token on the server and the delete script
    only removes things while the server still holds it, so a delete run after
    another resource has redeployed the same thing (a replacement's
    create-before-delete, a renamed resource) never undoes it.
    """
    return sha(f"{pulumi.get_project()}/{pulumi.get_stack()}/{name}/{script_without_token}")


def script_command(
    name: str,
    *,
    connection: remote.ConnectionArgs,
    script: str,
    delete_script: str | None = None,
    sudo: bool = False,
    stdin: pulumi.Input[str] | None = None,
    opts: pulumi.ResourceOptions,
) -> remote.Command:
    """A Command whose create and update run the same idempotent script.

    A change is an in-place update whether or not ``update`` is set: pulumi-command
    1.2.1 implements Update (``provider/pkg/provider/remote/commandController.go:63-84``,
    running ``update``, else ``create``), and only ``triggers`` (schema
    replaceOnChanges, ``common/inputs.go:10``) forces a replacement (pulumi-go-provider
    v1.3.0 ``infer/resource.go:1132-1148``). Setting ``update`` to the create script
    only states that intent explicitly.
    """
    text = remote_script(script, sudo=sudo)
    return remote.Command(
        name,
        connection=connection,
        create=text,
        update=text,
        delete=remote_script(delete_script, sudo=sudo) if delete_script else None,
        stdin=stdin,
        add_previous_output_in_env=False,
        logging=remote.Logging.STDOUT_AND_STDERR,
        opts=opts,
    )

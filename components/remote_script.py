"""One idempotent script run on the server as a Pulumi remote command."""

from __future__ import annotations

import pulumi
from pulumi_command import remote

from components.render import remote_script, sha


def child_options(parent: pulumi.Resource, opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    """Options for a component's child: parented, and waiting on what the component waits on.

    Pulumi does not pass a component's ``depends_on`` to its children, so a
    command inside a component would otherwise run before the commands its
    component was declared to follow.
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

    ``update`` is set to the create script, so a change is always an in-place
    re-run, never a replacement: Pulumi's create-before-delete could otherwise
    run an old ``delete`` after its replacement's ``create``.
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

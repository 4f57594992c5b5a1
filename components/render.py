"""Rendered templates -> text that lands on a server or runs there.

Every file that lands on a server has a template under ``templates/`` at the
path it lands on (``templates/etc/systemd/system/plumber-api@.service.j2``
produces ``/etc/systemd/system/plumber-<name>@.service``). Scripts that run on
the server live under ``templates/scripts/`` and embed those files with the
``put_file`` macro, so a change to any landed file changes the script text, and
so the diff ``pulumi preview`` shows.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
    # Bash uses "{#" (${#array[@]}); jinja comments are "{## ... ##}" here.
    comment_start_string="{##",
    comment_end_string="##}",
)


def sha(text: str | bytes, n: int = 12) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:n]


def _delimiter(content: str) -> str:
    return f"PH_EOF_{sha(content, 10)}"


_env.filters["sq"] = shlex.quote
_env.filters["delimiter"] = _delimiter
_env.filters["sha"] = sha


# The droplet a script is for (components/remote_script.py on_droplet): the preamble
# (templates/scripts/lib.sh.j2) refuses to run on any other.
DROPLET_ENV = "PLUMBER_HOSTING_DROPLET"


def render(template: str, **context: Any) -> str:
    """Render one template; missing variables are errors, not blanks."""
    return _env.get_template(template).render(**context)


def remote_script(script: str, *, sudo: bool = False) -> str:
    """Wrap a bash script so any POSIX login shell runs it under bash.

    The script travels in the command text (visible in previews, never
    secret); standard input stays free for the command's ``stdin``.
    """
    marker = f"PH_SCRIPT_{sha(script, 10)}"
    runner = "sudo -n bash" if sudo else "bash"
    return f'{runner} -c "$(cat <<\'{marker}\'\n{script.rstrip()}\n{marker}\n)" plumber-hosting\n'

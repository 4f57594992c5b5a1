"""What an app needs installed besides its code: Debian/Ubuntu system packages and
R packages, some pinned to a version (``name@version``).

Validators for the app model in :mod:`components.config` and the shapes the
deploy script (``templates/scripts/r-packages.sh.j2``) consumes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

# Debian policy 5.6.1: at least two characters, lower case letters, digits, '+', '-', '.',
# starting with a letter or digit. Ubuntu uses the same rule.
DEB_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{1,99}$")
R_PACKAGE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$")
# A CRAN version: numbers separated by '.' or '-' (1.0.0, 0.6-33).
R_PIN_VERSION_RE = re.compile(r"^\d+(?:[.-]\d+)+$")
RENV_LOCK = "renv.lock"


def deb_package(v: str) -> str:
    if not DEB_PACKAGE_RE.match(v):
        raise ValueError(
            f"{v!r} is not a Debian/Ubuntu package name (lower case letters, digits, '+', '-', '.', "
            "such as libxml2-dev or libpq5)"
        )
    return v


DebPackage = Annotated[str, AfterValidator(deb_package)]


def split_pin(ref: str) -> tuple[str, str | None]:
    """'digest@0.6.33' -> ('digest', '0.6.33'); 'digest' -> ('digest', None)."""
    name, _, version = ref.partition("@")
    return name, (version or None) if "@" in ref else None


def r_package(v: str) -> str:
    name, version = split_pin(v)
    if not R_PACKAGE_RE.match(name):
        raise ValueError(f"{v!r} is not an R package name (or name@version, such as digest@0.6.33)")
    if "@" in v and (version is None or not R_PIN_VERSION_RE.match(version)):
        raise ValueError(f"{v!r}: expected name@version with a version such as 1.2.0 or 0.6-33")
    return v


RPackage = Annotated[str, AfterValidator(r_package)]


def r_vector(items: list[str]) -> str:
    return "c(" + ", ".join(f"'{i}'" for i in items) + ")"


def r_named_vector(items: dict[str, str]) -> str:
    return "c(" + ", ".join(f"'{k}' = '{v}'" for k, v in items.items()) + ")"


def has_lockfile(source: Path) -> bool:
    return (source / RENV_LOCK).is_file()

"""The catalogue: Plumber APIs in the style R users write them (tests/e2e/apps/catalogue/,
each a directory as its author would have it), as stack config entries.

Shared by the end-to-end scenario (tests/e2e/test_catalogue.py) and the static
checks of what the program renders for them (renv, pins, system packages).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "tests" / "e2e" / "apps" / "catalogue"
# pr_cookie's key: 32 bytes as hex (plumber::random_cookie_key()); a test value.
COOKIE_KEY = "5f0d2c1e9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f3021120304a5"
DOCS_APPS = ("cars", "datafile", "entrypoint")


def catalogue_apps(sources: dict[str, Path] | None = None) -> list[dict[str, Any]]:
    """One app entry per catalogue directory; `sources` overrides some apps' directories."""
    sources = sources or {}

    def app(name: str, **keys: Any) -> dict[str, Any]:
        return {"name": name, "source": str(sources.get(name, CATALOGUE / name)), **keys}

    return [
        app("serializers"),
        app("sessions", env={"COOKIE_KEY": COOKIE_KEY}),
        app("attachments"),
        app("assets"),
        app("async"),
        app("entrypoint", docs=True),
        app("datafile", docs=True),
        app("filters"),
        app("bodies"),
        app("errors"),
        app("renvapp"),  # renv.lock: phversion 1.0.0
        app("sysreq", packages=["phjq"], system_packages=["jq"]),
        app("pinned", packages=["phversion@1.0.0"], system_packages=["jq"]),
        app("cars", docs=True),
    ]


def catalogue_config(base: dict[str, Any], sources: dict[str, Path] | None = None) -> dict[str, Any]:
    """The local stack with the catalogue as its apps (and no forward_root)."""
    cfg = {k: v for k, v in base.items() if k != "forward_root"}
    cfg["apps"] = catalogue_apps(sources)
    return cfg

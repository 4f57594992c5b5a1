"""A local CRAN-like repository for the lab (the lab host has no internet).

Holds, built here from tests/e2e/rpkg: phgreet; phversion in two versions,
2.0.0 current and 1.0.0 under src/contrib/Archive/phversion/ (as CRAN keeps
older versions: a pin or an renv.lock gets the older one while the latest is
newer); phjq, a package with a system requirement (the jq program). And
digest, repackaged from this machine's r-cran-digest as an R binary package.
Indexed with tools::write_PACKAGES and served over HTTP on the lab's host-end
address.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE_LIBRARY = Path("/usr/lib/R/site-library")
PHVERSION_CURRENT = "2.0.0"
PHVERSION_ARCHIVED = "1.0.0"


def _r_build(source: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["R", "CMD", "build", "--no-manual", "--no-build-vignettes", str(source)], cwd=into, check=True, capture_output=True
    )


def _build_version(source: Path, version: str, into: Path) -> None:
    """Build the package at `source` as `version` (its DESCRIPTION's Version rewritten)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / source.name
        shutil.copytree(source, copy)
        desc = copy / "DESCRIPTION"
        lines = [f"Version: {version}" if ln.startswith("Version:") else ln for ln in desc.read_text().splitlines()]
        desc.write_text("\n".join(lines) + "\n")
        _r_build(copy, into)


def build(repo: Path) -> Path:
    contrib = repo / "src" / "contrib"
    rpkg = HERE / "rpkg"
    for pkg in ("phgreet", "phjq"):
        _r_build(rpkg / pkg, contrib)
    _build_version(rpkg / "phversion", PHVERSION_CURRENT, contrib)
    _build_version(rpkg / "phversion", PHVERSION_ARCHIVED, contrib / "Archive" / "phversion")
    digest = SITE_LIBRARY / "digest"
    if not (digest / "DESCRIPTION").exists():
        raise RuntimeError("r-cran-digest is not installed on this machine (apt-get install r-cran-digest)")
    version = next(
        line.split(":", 1)[1].strip()
        for line in (digest / "DESCRIPTION").read_text().splitlines()
        if line.startswith("Version:")
    )
    with tarfile.open(contrib / f"digest_{version}.tar.gz", "w:gz") as tar:
        tar.add(digest, arcname="digest")
    subprocess.run(
        ["Rscript", "-e", f"tools::write_PACKAGES('{contrib}', type = 'source')"], check=True, capture_output=True
    )
    return repo


class RepoServer:
    """python's http.server on ADDRESS:PORT, stopped by PID."""

    def __init__(self, repo: Path, address: str, port: int = 8079) -> None:
        self.repo, self.address, self.port = repo, address, port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def __enter__(self) -> RepoServer:
        self.proc = subprocess.Popen(
            ["python3", "-m", "http.server", str(self.port), "--bind", self.address, "--directory", str(self.repo)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/src/contrib/PACKAGES", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"the CRAN-like repository did not come up on {self.url}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

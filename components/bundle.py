"""An app's source directory -> a deterministic tar file, built in the project.

The tar reaches the server through the app's ``<app>-upload`` resource
(pulumi-command's ``remote.CopyToRemote`` with a ``FileAsset``), so the Pulumi
state holds its path and SHA-256 only, never its bytes:

* The Python SDK sends a ``FileAsset`` as its path alone
  (``pulumi/runtime/rpc.py``, ``serialize_property``: ``obj["path"]``); the
  engine reads the file and records its SHA-256 (``sdk/go/common/resource/
  plugin/rpc.go``, ``UnmarshalPropertyValue`` with ``ComputeAssetHashes`` ->
  ``asset.EnsureHashWithWD``), resolving a relative path against the project
  directory (``pkg/resource/deploy/source_eval.go``: ``workingDirectory:
  src.runinfo.Pwd``; ``pkg/engine/deployment.go``: ``projinfo.GetPwdMain()``).
  The provider, started in that same directory (``plugin.go``: ``cmd.Dir =
  pwd``), opens the same relative path to copy it.
* So the path handed to the ``FileAsset`` is relative to the project directory
  (``.build/bundles/<release>.tar``) and the bytes are identical on every
  machine: state does not change between a laptop and a CI runner.

The tar is not compressed, so its bytes do not depend on the zlib build of the
machine that packed it (zlib-ng and zlib deflate differently; a different hash
would mean a new copy). R's data files (.rds, .RData) are compressed already,
and SSH carries the bytes as they are.

The release id is a hash of the code alone (names, executable bits, bytes),
computed as it always was: a release keeps its name on the server.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

IGNORED = {".git", ".Rproj.user", ".Rhistory", ".RData", "__pycache__", ".DS_Store", "renv"}
BUILD_DIR = Path(".build") / "bundles"  # relative to the project directory
PRUNE_AFTER_DAYS = 14  # bundles no run of the program has used for this long are deleted
_CHUNK = 1 << 20


def _files(source: Path) -> list[Path]:
    out: list[Path] = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if any(part in IGNORED for part in rel.parts):
            continue
        if path.is_file() and not path.is_symlink():
            out.append(path)
    return out


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.digest()


def _release_digest(entries: list[tuple[str, bool, bytes]]) -> str:
    """(relative name, executable, SHA-256 of the bytes) of each file, in name order."""
    digest = hashlib.sha256()
    for rel, executable, content_sha in entries:
        digest.update(f"{rel}\0{'x' if executable else '-'}\0".encode())
        digest.update(content_sha)
    return digest.hexdigest()[:12]


def release_id(source: Path) -> str:
    """Content hash of the app's code: names, executable bits and bytes."""
    return _release_digest(
        [
            (p.relative_to(source).as_posix(), bool(p.stat().st_mode & 0o111), _file_sha256(p))
            for p in _files(source)
        ]
    )


def _tar_release(path: Path) -> str | None:
    """The release id of the code inside a bundle; None if it is not a readable bundle."""
    entries: list[tuple[str, bool, bytes]] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile() or not member.name.startswith("app/"):
                    return None
                f = tar.extractfile(member)
                assert f is not None
                digest = hashlib.sha256()
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                entries.append((member.name[len("app/") :], bool(member.mode & 0o111), digest.digest()))
    except (OSError, tarfile.TarError):
        return None
    return _release_digest(entries)


@dataclass(frozen=True)
class Bundle:
    release: str  # names the release on the server: /srv/plumber/<app>/releases/<release>
    path: str  # the tar, relative to the project directory (POSIX), for the FileAsset
    sha256: str  # of the tar: what the engine records for the FileAsset, what the deploy checks
    size: int  # bytes of the tar


def _write_tar(source: Path, files: list[Path], dest: Path) -> None:
    """app/<file> for each file: fixed owner, mtime and mode, so the bytes depend on the code only."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in files:
                info = tarfile.TarInfo(f"app/{path.relative_to(source).as_posix()}")
                info.size = path.stat().st_size
                info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                with path.open("rb") as f:
                    tar.addfile(info, f)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _prune(build_dir: Path, keep: Path) -> None:
    cutoff = time.time() - PRUNE_AFTER_DAYS * 86400
    for old in build_dir.glob("*.tar"):
        if old != keep and old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)


def make_bundle(source: Path, project_dir: Path) -> Bundle:
    """Pack ``source`` into ``<project_dir>/.build/bundles/<release>.tar`` (reused when already there).

    A bundle already in the build directory is reused only if the code inside
    it is this release's; the code is packed again otherwise, and checked
    after packing, so an app changed while it was packed is an error, not a
    release whose name and content differ.
    """
    files = _files(source)
    release = release_id(source)
    build_dir = project_dir / BUILD_DIR
    build_dir.mkdir(parents=True, exist_ok=True)
    dest = build_dir / f"{release}.tar"
    if not dest.is_file() or _tar_release(dest) != release:
        _write_tar(source, files, dest)
        if _tar_release(dest) != release:
            dest.unlink(missing_ok=True)
            raise RuntimeError(f"{source} changed while it was being packed; run again")
    os.utime(dest)  # in use: not pruned
    _prune(build_dir, dest)
    return Bundle(
        release=release,
        path=(BUILD_DIR / dest.name).as_posix(),
        sha256=_file_sha256(dest).hex(),
        size=dest.stat().st_size,
    )

"""An app's source directory -> a deterministic tar file, built in the project.

The tar reaches the server through the app's ``<app>-upload`` resource
(pulumi-command's ``remote.CopyToRemote`` with a ``FileAsset``), so the Pulumi
state holds its path and SHA-256 only, never its bytes:

* The Python SDK sends a ``FileAsset`` as its path alone (pulumi 3.272.0
  ``pulumi/runtime/rpc.py:522-537``); the engine reads the file and records
  its SHA-256 (``sdk/go/common/resource/plugin/rpc.go:436-445``,
  ``ComputeAssetHashes`` -> ``asset.go`` ``EnsureHashWithWD``), a relative path
  taken from the deployment's working directory (``source_eval.go:557``
  ``src.runinfo.Pwd``, set in ``pkg/engine/update.go:1134-1136`` from
  ``ProjectInfoContext``, ``deployment.go:57``: ``projinfo.GetPwdMain()``, the
  project root when Pulumi.yaml sets no ``main``, ``project.go:31-33``). The
  provider runs in that same directory (``provider_plugin.go:287``
  ``newPlugin(ctx, ctx.Pwd, ...)``; ``plugin.go:599`` ``cmd.Dir = pwd``) and
  opens the same relative path to copy it (``copyController.go:203-204``).
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
from typing import BinaryIO

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


@dataclass(frozen=True)
class Bundle:
    release: str  # names the release on the server: /srv/plumber/<app>/releases/<release>
    path: str  # the tar, relative to the project directory (POSIX), for the FileAsset
    sha256: str  # of the tar: what the engine records for the FileAsset, what the deploy checks
    size: int  # bytes of the tar


class _Sink:
    """A write-only file for tarfile: hashes what is written and passes it on to ``out``, if any."""

    def __init__(self, out: BinaryIO | None = None) -> None:
        self.digest = hashlib.sha256()
        self.out = out
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size


class _HashingReader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.digest.update(data)
        return data


def _pack(source: Path, files: list[Path], sink: _Sink) -> str:
    """Write the tar of app/<file> for each file into ``sink``: fixed owner, mtime and mode, so its
    bytes depend on the code only. Returns the release id of the bytes it packed."""
    entries: list[tuple[str, bool, bytes]] = []
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for path in files:
            rel = path.relative_to(source).as_posix()
            executable = bool(path.stat().st_mode & 0o111)
            info = tarfile.TarInfo(f"app/{rel}")
            info.size = path.stat().st_size
            info.mode = 0o755 if executable else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with path.open("rb") as f:
                reader = _HashingReader(f)
                tar.addfile(info, reader)  # type: ignore[arg-type]
            entries.append((rel, executable, reader.digest.digest()))
    return _release_digest(entries)


def _prune(build_dir: Path, keep: Path) -> None:
    cutoff = time.time() - PRUNE_AFTER_DAYS * 86400
    for old in build_dir.glob("*.tar"):
        if old != keep and old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)


def make_bundle(source: Path, project_dir: Path) -> Bundle:
    """Pack ``source`` into ``<project_dir>/.build/bundles/<release>.tar``.

    The code is packed in memory first, to learn the release and the tar's
    SHA-256; a file already in the build directory is kept only if it has
    exactly those bytes. A tar written anew is checked against them, so an app
    that changed while it was packed is an error, not a release whose name and
    bytes disagree.
    """
    files = _files(source)
    expected = _Sink()
    release = _pack(source, files, expected)
    sha256 = expected.digest.hexdigest()
    build_dir = project_dir / BUILD_DIR
    build_dir.mkdir(parents=True, exist_ok=True)
    dest = build_dir / f"{release}.tar"
    if not dest.is_file() or _file_sha256(dest).hex() != sha256:
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as f:
                written = _Sink(f)
                again = _pack(source, files, written)
            if (again, written.digest.hexdigest()) != (release, sha256):
                raise RuntimeError(f"{source} changed while it was being packed; run again")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    os.utime(dest)  # in use: not pruned
    _prune(build_dir, dest)
    return Bundle(release=release, path=(BUILD_DIR / dest.name).as_posix(), sha256=sha256, size=expected.size)

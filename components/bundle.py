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

Which files: an app directory inside a git work tree is packed as git has it
(issue 23 point 11, review D12), so a laptop and a CI runner pack the same
bundle: the files ``git ls-files`` lists (their bytes from the work tree,
their executable bit as git records it, a symlink never), plus the app's
``include`` list (data kept outside git). Untracked scratch files and ignored
ones stay out, and the preview names them. Outside git, the directory as it
is. Either way ``NEVER_PACKED`` (secrets, editor state) never goes in, tracked
or listed or not. git itself answers (``git ls-files``); nothing here
reimplements its rules.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

# Never in a bundle, in git or not, listed in `include` or not: secrets (R reads .Renviron at start-up;
# .env files hold tokens) and an R user's or git's own state.
NEVER_PACKED = frozenset({".Renviron", ".env", ".Rhistory", ".Rproj.user", ".git"})
# The secrets among them: an app that reads them locally gets nothing from them on the server.
SECRET_FILES = frozenset({".Renviron", ".env"})
# Also left out: a session image, caches, and renv's project library (the server restores renv.lock).
IGNORED = NEVER_PACKED | {".RData", "__pycache__", ".DS_Store", "renv"}
GIT_MODE_EXECUTABLE, GIT_MODE_FILE, GIT_MODE_SYMLINK = "100755", "100644", "120000"
# git variables that point it at another repository than the app directory's own
_GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
                      "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_PREFIX")
BUILD_DIR = Path(".build") / "bundles"  # relative to the project directory
PRUNE_AFTER_DAYS = 14  # bundles no run of the program has used for this long are deleted
_CHUNK = 1 << 20


class BundleError(Exception):
    """What stops an app directory from being packed (git failed, ...), for a config error."""


@dataclass(frozen=True)
class Entry:
    name: str  # relative to the app directory, POSIX
    path: Path  # where the bytes are read from
    executable: bool


@dataclass(frozen=True)
class Selection:
    """What goes into an app's bundle."""

    entries: list[Entry]
    in_git: bool  # the app directory is in a git work tree: what git tracks, plus `include`
    tracked_never: list[str] = field(default_factory=list)  # NEVER_PACKED names git tracks: left out
    symlinks: list[str] = field(default_factory=list)  # symlinks git tracks: left out

    @property
    def names(self) -> set[str]:
        return {e.name for e in self.entries}


def _never(name: str) -> bool:
    return any(part in NEVER_PACKED for part in name.rstrip("/").split("/"))


def _left_out(name: str) -> bool:
    return any(part in IGNORED for part in name.rstrip("/").split("/"))


def _files(source: Path) -> list[Path]:
    """The directory as it is: every regular file but IGNORED names and symlinks (outside git)."""
    out: list[Path] = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if any(part in IGNORED for part in rel.parts):
            continue
        if path.is_file() and not path.is_symlink():
            out.append(path)
    return out


def _git(source: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    return subprocess.run(["git", "-C", str(source), *args], capture_output=True, env=env, check=False)


def _git_names(source: Path, *args: str) -> list[str] | None:
    """``git ls-files -z <args> -- .`` in ``source`` (names relative to it); None outside a git work tree."""
    try:
        res = _git(source, "ls-files", "-z", *args, "--", ".")
    except FileNotFoundError:  # no git program
        if any((d / ".git").exists() for d in (source, *source.parents)):
            raise BundleError(
                f"{source} is in a git work tree, and git is not installed to list the files it tracks; install git"
            ) from None
        return None
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip()
        if "not a git repository" in err:
            return None
        raise BundleError(f"git cannot list the files of {source}: {err}")
    return [n for n in res.stdout.decode("utf-8", errors="surrogateescape").split("\0") if n]


def _walk(source: Path, rel: str) -> list[Entry]:
    """An `include` entry: a file, or every file under a directory (IGNORED names and symlinks left out)."""
    top = source / rel
    paths = [top] if top.is_file() else sorted(top.rglob("*"))
    out: list[Entry] = []
    for path in paths:
        name = path.relative_to(source).as_posix()
        if _left_out(name) or not path.is_file() or path.is_symlink():
            continue
        out.append(Entry(name, path, bool(path.stat().st_mode & 0o111)))
    return out


def select_files(source: Path, include: Sequence[str] = ()) -> Selection:
    """The files of ``source`` that go into its bundle (see the module's docstring)."""
    # "<mode> <object> <stage>\t<path>" for each file git tracks, submodules' files included
    staged = _git_names(source, "--stage", "--recurse-submodules")
    by_name: dict[str, Entry] = {}
    symlinks: list[str] = []
    tracked_never: list[str] = []
    if staged is None:
        by_name = {e.name: e for e in (Entry(p.relative_to(source).as_posix(), p, bool(p.stat().st_mode & 0o111))
                                       for p in _files(source))}
    for record in staged or []:
        meta, _, name = record.partition("\t")
        mode = meta.split(" ")[0]
        if _never(name):
            tracked_never.append(name)
            continue
        if _left_out(name) or name in by_name:
            continue
        path = source / name
        if mode == GIT_MODE_SYMLINK:
            symlinks.append(name)
        elif mode in (GIT_MODE_EXECUTABLE, GIT_MODE_FILE) and path.is_file() and not path.is_symlink():
            by_name[name] = Entry(name, path, mode == GIT_MODE_EXECUTABLE)
        # else: deleted in the work tree (not packed, as if that were committed), or a submodule not checked out
    for rel in include:
        for e in _walk(source, rel):
            by_name.setdefault(e.name, e)
    return Selection(
        entries=sorted(by_name.values(), key=lambda e: e.path),  # the order the release id always had
        in_git=staged is not None,
        tracked_never=sorted(set(tracked_never)),
        symlinks=sorted(symlinks),
    )


def _listed(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def selection_notes(where: str, source: Path, sel: Selection) -> list[tuple[str, str]]:
    """("warn" | "info", message) for what the preview should say was left out of a bundle:
    files git does not track (warn: a CI checkout lacks them too), secrets that are never packed
    (warn: the app may read them locally), files git ignores and symlinks (info)."""
    packed = sel.names
    out: list[tuple[str, str]] = []
    if sel.in_git:
        others = _git_names(source, "--others", "--exclude-standard") or []
        ignored_all = _git_names(source, "--others", "--ignored", "--exclude-standard", "--directory") or []
        never = sorted({*sel.tracked_never, *(n for n in [*others, *ignored_all] if _never(n))})
        untracked = [n for n in others if not _left_out(n) and n not in packed]
        ignored = [n for n in ignored_all if not _left_out(n) and n not in packed
                   and not any(p.startswith(n) for p in packed)]
    else:
        never = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.name in SECRET_FILES)
        untracked, ignored = [], []
    if untracked:
        out.append(("warn", f"{where}: not tracked by git, so left out of the bundle (a CI runner's checkout "
                            f"would not have them either): {_listed(untracked)} in {source}; "
                            "git add them, or list them under the app's include"))
    secrets = [n for n in never if n.rstrip("/").split("/")[-1] in SECRET_FILES]
    if secrets:
        out.append(("warn", f"{where}: {_listed(secrets)} in {source} never go into a bundle (secrets); "
                            "what the app reads from them locally goes in the app's env or secret_env"))
    if ignored:
        out.append(("info", f"{where}: ignored by git, so left out of the bundle: {_listed(ignored)}; "
                            "list what the app needs under its include"))
    if sel.symlinks:
        out.append(("info", f"{where}: symlinks are not packed: {_listed(sel.symlinks)}"))
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


def release_id(source: Path, include: Sequence[str] = ()) -> str:
    """Content hash of the app's code: names, executable bits and bytes."""
    return _release_digest(
        [(e.name, e.executable, _file_sha256(e.path)) for e in select_files(source, include).entries]
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


def _pack(files: list[Entry], sink: _Sink) -> str:
    """Write the tar of app/<file> for each file into ``sink``: fixed owner, mtime and mode, so its
    bytes depend on the code only. Returns the release id of the bytes it packed."""
    entries: list[tuple[str, bool, bytes]] = []
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for entry in files:
            rel, path, executable = entry.name, entry.path, entry.executable
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


def make_bundle(source: Path, project_dir: Path, include: Sequence[str] = ()) -> Bundle:
    """Pack ``source`` (the files :func:`select_files` picks) into ``<project_dir>/.build/bundles/<release>.tar``.

    The code is packed in memory first, to learn the release and the tar's
    SHA-256; a file already in the build directory is kept only if it has
    exactly those bytes. A tar written anew is checked against them, so an app
    that changed while it was packed is an error, not a release whose name and
    bytes disagree.
    """
    files = select_files(source, include).entries
    expected = _Sink()
    release = _pack(files, expected)
    sha256 = expected.digest.hexdigest()
    build_dir = project_dir / BUILD_DIR
    build_dir.mkdir(parents=True, exist_ok=True)
    dest = build_dir / f"{release}.tar"
    if not dest.is_file() or _file_sha256(dest).hex() != sha256:
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as f:
                written = _Sink(f)
                again = _pack(files, written)
            if (again, written.digest.hexdigest()) != (release, sha256):
                raise RuntimeError(f"{source} changed while it was being packed; run again")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    os.utime(dest)  # in use: not pruned
    _prune(build_dir, dest)
    return Bundle(release=release, path=(BUILD_DIR / dest.name).as_posix(), sha256=sha256, size=expected.size)

"""An app's source directory -> a deterministic upload bundle.

The bundle (base64 of a tar.gz) travels as the deploy command's stdin, which
Pulumi stores as a secret because it also carries the app's env file. It is
byte-for-byte stable for unchanged inputs, so an unchanged app never shows a
diff, and the release id is a hash of the code alone.

There are two payloads: the full one (code and env file) and one with the env
file only, sent when the release is already on the server (a rollback to a
kept release uploads no code).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

IGNORED = {".git", ".Rproj.user", ".Rhistory", ".RData", "__pycache__", ".DS_Store", "renv"}


def _files(source: Path) -> list[Path]:
    out: list[Path] = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if any(part in IGNORED for part in rel.parts):
            continue
        if path.is_file() and not path.is_symlink():
            out.append(path)
    return out


def release_id(source: Path) -> str:
    """Content hash of the app's code: names, executable bits and bytes."""
    digest = hashlib.sha256()
    for path in _files(source):
        rel = path.relative_to(source).as_posix()
        executable = "x" if path.stat().st_mode & 0o111 else "-"
        digest.update(f"{rel}\0{executable}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


@dataclass(frozen=True)
class Bundle:
    release: str
    payload: str  # base64 text, for the command's stdin: app/ and app.env
    env_payload: str  # base64 text: app.env only, for a release already on the server
    size: int  # bytes of the compressed full bundle


def _pack(files: list[tuple[str, bytes, int]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in files:
            _add(tar, name, data, mode)
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def make_bundle(source: Path, env_file: str) -> Bundle:
    code = [
        (f"app/{path.relative_to(source).as_posix()}", path.read_bytes(), 0o755 if path.stat().st_mode & 0o111 else 0o644)
        for path in _files(source)
    ]
    env = ("app.env", env_file.encode(), 0o600)
    full, env_only = _pack([*code, env]), _pack([env])
    return Bundle(
        release=release_id(source),
        payload=base64.b64encode(full).decode(),
        env_payload=base64.b64encode(env_only).decode(),
        size=len(full),
    )

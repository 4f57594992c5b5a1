"""Keys and certificates the stack config carries, decoded while it is validated.

A damaged paste is a config error naming the key (components/config.py), never a
traceback from the code that uses the value later (components/account.py's
fingerprint, pulumi-command's SSH client on the first command). Also the SSH
agent the user's environment names: pulumi-command dials it for every remote
command.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import socket
import struct
from pathlib import Path

PUBLIC_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
MAX_KEY_FILE_BYTES = 64 * 1024
PEM_BLOCK_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\n(.*?)\n?-----END ([A-Z0-9 ]+)-----", re.S)
PRIVATE_KEY_LABELS = ("OPENSSH PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY", "PRIVATE KEY")
PASSPHRASE_HINT = (
    "is protected by a passphrase, which the remote commands cannot ask for; use a key without one "
    "(a copy: ssh-keygen -p -N '' -f <copy>)"
)


def _ssh_strings(blob: bytes, count: int | None = None) -> list[bytes] | None:
    """The length-prefixed strings of an SSH wire blob (RFC 4251 5); None if it is cut short.

    With ``count``, that many strings and the rest of the blob is left unread."""
    out: list[bytes] = []
    i = 0
    while i < len(blob) and (count is None or len(out) < count):
        if i + 4 > len(blob):
            return None
        (n,) = struct.unpack(">I", blob[i : i + 4])
        if i + 4 + n > len(blob):
            return None
        out.append(blob[i + 4 : i + 4 + n])
        i += 4 + n
    if count is not None and len(out) < count:
        return None
    return out


def public_key_problem(line: str) -> str | None:
    """Why ``line`` is not one OpenSSH public key DigitalOcean can take, or None."""
    text = line.strip()
    parts = text.split()
    if not parts or parts[0] not in PUBLIC_KEY_TYPES or len(parts) < 2:
        return "expected an OpenSSH public key line such as 'ssh-ed25519 AAAA...'"
    if "\n" in text:
        return "expected one OpenSSH public key line; this holds several lines"
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return (
            f"the {parts[0]} key's base64 is damaged (a truncated or wrapped paste?); "
            "expected the whole line of the .pub file, such as 'ssh-ed25519 AAAA... you@laptop'"
        )
    fields = _ssh_strings(blob)
    kind = parts[0].encode()
    whole = (
        fields is not None
        and fields[0] == kind
        and (
            (kind == b"ssh-ed25519" and len(fields) == 2 and len(fields[1]) == 32)
            or (kind == b"ssh-rsa" and len(fields) == 3)
            or (kind.startswith(b"ecdsa-") and len(fields) == 3 and fields[1] == kind.split(b"-")[-1])
        )
    )
    if not whole:
        return (
            f"the key data is not a whole {parts[0]} key (a truncated paste?); "
            "expected the whole line of the .pub file"
        )
    return None


def normalize_private_key(text: str) -> str:
    """The key as ssh-keygen writes it: LF line ends, no blank space around it or at line ends,
    one final newline. The same key from any file (a CI secret written with an extra newline, a
    copy with CRLF) is then the same bytes in every command's connection."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _der_whole(der: bytes) -> bool:
    """A DER SEQUENCE whose length is the whole of ``der``."""
    if len(der) < 2 or der[0] != 0x30:
        return False
    first = der[1]
    if first < 0x80:
        return 2 + first == len(der)
    n = first & 0x7F
    if n == 0 or n > 4 or len(der) < 2 + n:
        return False
    return 2 + n + int.from_bytes(der[2 : 2 + n], "big") == len(der)


def _pem_body(block: str) -> tuple[dict[str, str], bytes | None]:
    """(headers, decoded bytes or None if the base64 is damaged) of one PEM block's body."""
    headers: dict[str, str] = {}
    lines = block.split("\n")
    while lines and ":" in lines[0]:
        name, _, value = lines.pop(0).partition(":")
        headers[name.strip()] = value.strip()
    try:
        return headers, base64.b64decode("".join(line.strip() for line in lines), validate=True)
    except (binascii.Error, ValueError):
        return headers, None


def private_key_problem(text: str) -> str | None:
    """Why ``text`` is not an unencrypted private key pulumi-command's SSH client can use, or None."""
    key = normalize_private_key(text)
    if not key.strip():
        return "is empty; expected an OpenSSH/PEM private key"
    if key.startswith("PuTTY-User-Key-File"):
        return "is a PuTTY key (.ppk); convert it: puttygen key.ppk -O private-openssh -o key"
    if any(key.startswith(t + " ") for t in PUBLIC_KEY_TYPES) or "PUBLIC KEY-----" in key:
        return "is a public key; expected the private key (the file without .pub)"
    match = PEM_BLOCK_RE.search(key)
    if match is None or "PRIVATE KEY" not in match.group(1):
        return "is not an OpenSSH/PEM private key (expected '-----BEGIN OPENSSH PRIVATE KEY-----' ... '-----END ...')"
    label, body, end = match.groups()
    if label != end:
        return f"is damaged: it begins as {label!r} and ends as {end!r}"
    if label == "ENCRYPTED PRIVATE KEY":
        return PASSPHRASE_HINT
    if label not in PRIVATE_KEY_LABELS:
        return f"holds a {label!r} block, not a key type SSH takes; expected an OpenSSH/PEM private key"
    headers, data = _pem_body(body)
    if "ENCRYPTED" in headers.get("Proc-Type", ""):
        return PASSPHRASE_HINT
    damaged = "is damaged (a truncated paste or file?): its key data does not decode"
    if data is None:
        return damaged
    if label == "OPENSSH PRIVATE KEY":
        magic = b"openssh-key-v1\0"
        head = _ssh_strings(data[len(magic) :], 3) if data.startswith(magic) else None
        if head is None:
            return damaged
        cipher, _kdf, _options = head
        if cipher != b"none":
            return PASSPHRASE_HINT
        rest = data[len(magic) + sum(4 + len(f) for f in head) :]
        if len(rest) < 4:
            return damaged
        (nkeys,) = struct.unpack(">I", rest[:4])
        # nkeys public keys, then the private section, and nothing after it
        sections = _ssh_strings(rest[4:])
        if nkeys < 1 or sections is None or len(sections) != nkeys + 1:
            return damaged
        return None
    if not _der_whole(data):
        return damaged
    return None


def read_private_key_file(path: Path) -> tuple[str | None, str | None]:
    """(text, None) or (None, why the file cannot be the private key)."""
    if not path.exists():
        return None, f"no such file: {path}"
    if path.is_dir():
        return None, f"{path} is a directory; expected a private key file such as ~/.ssh/id_ed25519"
    try:
        size = path.stat().st_size
        if size > MAX_KEY_FILE_BYTES:
            return None, f"{path} is {size} bytes, not a private key (at most {MAX_KEY_FILE_BYTES})"
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        return None, f"{path} cannot be read: {err.strerror}"
    except UnicodeDecodeError:
        return None, f"{path} is not a text file; expected an OpenSSH/PEM private key"
    problem = private_key_problem(text)
    return (None, f"{path} {problem}") if problem else (text, None)


def certificate_problem(pem: str) -> str | None:
    """Why ``pem`` is not one or more whole PEM certificates, or None."""
    blocks = PEM_BLOCK_RE.findall(pem.replace("\r\n", "\n"))
    if not blocks or any(label != "CERTIFICATE" or end != "CERTIFICATE" for label, _, end in blocks):
        return "expected a PEM certificate ('-----BEGIN CERTIFICATE-----' ... '-----END CERTIFICATE-----')"
    for i, (_, body, _) in enumerate(blocks):
        headers, der = _pem_body(body)
        if headers or der is None or not _der_whole(der):
            return f"certificate {i + 1} is damaged (a truncated paste?): its data does not decode"
    return None


def agent_problem(environ: dict[str, str] | None = None) -> str | None:
    """Why ``SSH_AUTH_SOCK`` would break every remote command, or None.

    pulumi-command v1.2.1 takes the agent socket from ``SSH_AUTH_SOCK`` when the connection names
    none (provider/pkg/provider/remote/connection_unix.go ``tryGetDefaultAgentSocket``) and dials it
    on every connection, key or not; a failed dial fails the command (connection.go:131-145:
    ``dialAgent`` error returned as is). A variable left over from a closed login or a tmux
    session reattached elsewhere names a socket that is gone. The provider inherits the
    environment of the `pulumi` process, as this program does.
    """
    path = (os.environ if environ is None else environ).get("SSH_AUTH_SOCK", "")
    if not path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect(path)
    except OSError as err:
        return (
            f"names {path}, where no SSH agent answers ({err.strerror or err}): pulumi-command would fail "
            "every remote command dialling it. Run `unset SSH_AUTH_SOCK` (the stack's own key needs no agent) "
            "or start your agent (eval \"$(ssh-agent)\"), then run pulumi again"
        )
    finally:
        sock.close()
    return None

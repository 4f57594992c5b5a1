"""What the DigitalOcean account already holds, looked up before anything is declared.

An SSH public key can be on an account only once: DigitalOcean answers a second
upload of the same key with 422 "SSH Key is already in use on your account". So
the stack's ``ssh_public_key`` is looked up by fingerprint (the provider's
``getSshKeys`` data source, digitalocean/sshkey/datasource_ssh_keys.go) and
uploaded only when no key on the account matches.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import pulumi_digitalocean as do


def fingerprint(public_key: str) -> str:
    """DigitalOcean's fingerprint of an OpenSSH public key: MD5 of the key blob, hex pairs."""
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob).hexdigest()  # the format DigitalOcean names keys by
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@dataclass(frozen=True)
class KeyOnAccount:
    fingerprint: str
    upload: bool  # declare the SshKey resource (absent from the account, or uploaded by this stack)


def ssh_key_on_account(public_key: str, own_name: str) -> KeyOnAccount:
    """Whether the stack must upload its key, or reuse the one already on the account.

    A key this stack uploaded itself carries its name (``own_name``): the stack
    keeps declaring it, so its state and ``pulumi destroy`` still own it. A key
    with any other name (added by hand, or uploaded by another stack) is reused
    by fingerprint and never touched.
    """
    fp = fingerprint(public_key)
    found = do.get_ssh_keys(filters=[do.GetSshKeysFilterArgs(key="fingerprint", values=[fp])]).ssh_keys
    others = [k for k in found if k.name != own_name]
    return KeyOnAccount(fingerprint=fp, upload=not others)

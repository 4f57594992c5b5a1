#!/usr/bin/env bash
# Point a stack at the deploy key held in the SSH_PRIVATE_KEY secret.
#
# The key is written to a file outside the work tree and the stack's
# `plumber-hosting:ssh_private_key_file` is set to it (in this runner's copy of
# the stack file only; nothing is committed). The program accepts either
# ssh_private_key or ssh_private_key_file, not both, so a committed
# ssh_private_key is removed from that copy first.
#
# With no SSH_PRIVATE_KEY the stack is left as committed: a stack may carry its
# key itself, encrypted (`pulumi config set --secret ssh_private_key < key`).
#
# Needs: pulumi on PATH, STACK, and the backend's environment
# (PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE, AWS_* for Spaces).
set -euo pipefail

: "${STACK:?STACK must name the stack}"

if [[ -z "${SSH_PRIVATE_KEY:-}" ]]; then
  echo "SSH_PRIVATE_KEY is empty: using the key the stack config names"
  exit 0
fi

key_dir="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/plumber-ssh"
key_file="$key_dir/id_${STACK}"
mkdir -p "$key_dir"
chmod 700 "$key_dir"
(
  umask 077
  # Secrets pasted into the GitHub UI may lose the final newline; OpenSSH needs it.
  printf '%s\n' "$SSH_PRIVATE_KEY" > "$key_file"
)

pulumi config rm --stack "$STACK" plumber-hosting:ssh_private_key >/dev/null 2>&1 || true
pulumi config set --stack "$STACK" plumber-hosting:ssh_private_key_file "$key_file"
echo "stack $STACK: ssh_private_key_file set to $key_file"

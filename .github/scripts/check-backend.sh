#!/usr/bin/env bash
# Stop a workflow early when the state backend is not set.
#
# With PULUMI_BACKEND_URL empty (neither the repository variable nor the secret
# set, or an expression that came out empty), the CLI would fall back to the
# project's `backend.url` in Pulumi.yaml: a file backend in the runner's home,
# which holds no stack ("no stack named ..."), or worse, a new one made there
# and lost with the runner. A file:// URL is refused for the same reason.
set -euo pipefail

url="${PULUMI_BACKEND_URL:-}"
if [[ -z "${url//[[:space:]]/}" ]]; then
  echo "::error title=PULUMI_BACKEND_URL is empty::set the repository variable (or secret) PULUMI_BACKEND_URL to the state bucket's s3:// URL (docs/gitops.md, One-time setup 4); without it Pulumi would use a file backend on this runner, which has none of the stacks"
  exit 1
fi
if [[ "$url" == file:* ]]; then
  echo "::error title=PULUMI_BACKEND_URL is a file backend::a file:// backend on a CI runner is lost with the runner; use the team's s3:// URL (docs/gitops.md)"
  exit 1
fi
# The scheme only: the URL may be a secret.
echo "state backend: ${url%%://*}"

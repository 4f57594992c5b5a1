#!/usr/bin/env bash
# Select the stack STACK if it exists in the backend; if it does not, say so
# clearly and let the job skip it (steps after this one check the `exists`
# output). CI never creates stacks: `pulumi stack init` fixes the stack's
# passphrase salt (committed in stacks/Pulumi.<stack>.yaml), which a person does
# once (docs/gitops.md, One-time setup 3). Any other error (backend unreachable,
# wrong Spaces key) fails the step.
#
# Needs: pulumi on PATH, STACK, the backend's environment (PULUMI_BACKEND_URL,
# AWS_*). Writes exists=true|false to GITHUB_OUTPUT.
set -euo pipefail

: "${STACK:?STACK must name the stack}"
output="${GITHUB_OUTPUT:-/dev/null}"
summary="${GITHUB_STEP_SUMMARY:-/dev/null}"

if out=$(pulumi stack select "$STACK" --non-interactive 2>&1); then
  echo "exists=true" >>"$output"
  echo "stack $STACK selected"
  exit 0
fi
# backenderr.StackNotFoundError: "no stack named '<name>' found" (pkg/backend/backenderr/backenderr.go)
if grep -q "no stack named" <<<"$out"; then
  echo "exists=false" >>"$output"
  msg="stack $STACK does not exist in the state backend, so this job skips it. Create it once with 'pulumi stack init $STACK --secrets-provider passphrase' (docs/gitops.md), commit the encryptionsalt it adds to stacks/Pulumi.$STACK.yaml, and re-run; or delete stacks/Pulumi.$STACK.yaml."
  echo "::warning title=stack $STACK skipped::$msg"
  printf '### :warning: stack %s skipped\n\n%s\n' "$STACK" "$msg" >>"$summary"
  exit 0
fi
printf '%s\n' "$out" >&2
echo "::error title=stack $STACK::pulumi stack select failed (see the log above)"
exit 1

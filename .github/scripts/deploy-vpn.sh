#!/usr/bin/env bash
# The deploy VPN: how `pulumi up` on a GitHub-hosted runner reaches servers
# whose SSH port only admits `admin_cidrs` (the DigitalOcean firewall and ufw
# on the host both do; see docs/gitops.md, "How CI reaches the servers").
#
#   deploy-vpn.sh up     bring up a WireGuard tunnel to the team's VPN gateway,
#                        whose address is in admin_cidrs; the remote commands'
#                        SSH to the servers then leaves through it
#   deploy-vpn.sh down   remove the tunnel again (run it always, even after a
#                        failed or cancelled update)
#
# WG_CONFIG holds the runner's whole wg-quick(8) configuration (an environment
# secret: [Interface] PrivateKey + Address, [Peer] the gateway's PublicKey,
# Endpoint and AllowedIPs). AllowedIPs names the servers' addresses only (a
# split tunnel, docs/gitops.md): with 0.0.0.0/0 wg-quick sends every packet
# through the gateway from the moment it is up, the runner's connections to
# GitHub already open included, and `up` warns. WG_CONFIG is written to a file
# readable by root only and never printed; wg-quick prints the commands it
# runs, not the keys. With no WG_CONFIG, `up` says so and does nothing: SSH
# then goes straight from the runner, which works only for stacks whose
# admin_cidrs admit any address (dev). Nothing on the servers or in their firewalls changes either way.
#
# Needs root (wg-quick creates an interface and routes) and wireguard-tools
# (installed with apt-get if missing). Without the kernel's WireGuard module
# (GitHub-hosted runners' kernels have it; containers and some self-hosted
# runners don't), wg-quick falls back to a userspace WireGuard only if one is
# installed: its add_if() runs wireguard-go (or $WG_QUICK_USERSPACE_IMPLEMENTATION)
# only if `command -v` finds it, and otherwise exits with the error of
# `ip link add <iface> type wireguard`. wireguard-tools does not bring it (not
# even as a recommendation), so `up` installs wireguard-go when the module is
# missing and no userspace implementation is there.
# Environment: WG_CONFIG, WG_INTERFACE (default wg-deploy), RUNNER_TEMP.
set -euo pipefail

iface="${WG_INTERFACE:-wg-deploy}"
if [[ ! "$iface" =~ ^[a-zA-Z0-9_=+.-]{1,15}$ ]]; then
  echo "::error::WG_INTERFACE '$iface' is not a valid interface name" >&2
  exit 2
fi
conf_dir="${RUNNER_TEMP:-${TMPDIR:-/tmp}}/plumber-vpn"
conf="$conf_dir/$iface.conf" # wg-quick names the interface after the file

vpn_up() {
  if [[ -z "${WG_CONFIG:-}" ]]; then
    echo "::notice title=no deploy VPN::WG_CONFIG is empty for this environment: SSH goes straight from this runner, which only works if the stack's admin_cidrs admit any address"
    return 0
  fi
  local missing=()
  if ! command -v wg-quick >/dev/null 2>&1; then missing+=(wireguard-tools); fi
  if [[ ! -e /sys/module/wireguard ]] && ! modprobe -q wireguard 2>/dev/null &&
    ! command -v "${WG_QUICK_USERSPACE_IMPLEMENTATION:-wireguard-go}" >/dev/null 2>&1; then
    missing+=(wireguard-go) # no kernel module: wg-quick's fallback, which it never installs itself
  fi
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if grep -Eiq '^[[:space:]]*AllowedIPs[[:space:]]*=([^#]*[,[:space:]])?(0\.0\.0\.0|::)/0([,[:space:]#]|$)' <<<"$WG_CONFIG"; then
    echo "::warning title=full-tunnel deploy VPN::WG_CONFIG's AllowedIPs has a /0: every connection of this runner, those to GitHub already open included, goes through the gateway from now on. List the servers' addresses instead (docs/gitops.md, How CI reaches the servers)."
  fi
  if [[ -e "/sys/class/net/$iface" ]]; then
    echo "::error::interface $iface already exists: run 'deploy-vpn.sh down' first" >&2
    return 1
  fi
  mkdir -p "$conf_dir"
  chmod 700 "$conf_dir"
  (
    umask 077
    printf '%s\n' "$WG_CONFIG" >"$conf"
  )
  wg-quick up "$conf"
  # Public keys, endpoint and allowed IPs only (wg show never prints the private key).
  wg show "$iface"
  echo "deploy VPN up on $iface"
}

vpn_down() {
  if [[ -f "$conf" ]]; then
    wg-quick down "$conf" || ip link delete dev "$iface" 2>/dev/null || true
    rm -f "$conf"
  elif [[ -e "/sys/class/net/$iface" ]]; then
    ip link delete dev "$iface"
  fi
  # wireguard-go (no kernel module) removes its interface on its own, shortly after.
  for _ in $(seq 50); do
    [[ -e "/sys/class/net/$iface" ]] || break
    sleep 0.1
  done
  if [[ -e "/sys/class/net/$iface" ]]; then
    echo "::error::interface $iface is still there" >&2
    return 1
  fi
  echo "deploy VPN down ($iface gone)"
}

case "${1:-}" in
  up) vpn_up ;;
  down) vpn_down ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac

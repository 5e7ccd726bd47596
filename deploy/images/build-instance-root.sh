#!/usr/bin/env bash
# Builds the root file system of a stand-in cloud instance: Debian bookworm
# with systemd as init, booted by systemd-nspawn in the start-up script test
# (deploy/terraform/startup_test.go), which runs the rendered executor
# start-up script on it as a cloud instance runs its user data.
#
# Beside a cloud image's usual packages (systemd, curl, ca-certificates) it
# holds git, docker.io and iptables: the test's instance has no internet, so the
# script's `executor install docker` finds them installed instead of
# installing them with apt.
#
# Usage: deploy/images/build-instance-root.sh [dir]   (root; about a
# minute and 600 MB; needs debootstrap and the Debian mirror)
#
# dir defaults to $EXECD_INSTANCE_ROOT, else /var/cache/execd/instance-root:
# outside the clone, so that CI's clean clones on one machine share it.
# Idempotent: a root built from the same package list is kept.
set -euo pipefail
cd "$(dirname "$0")/../.."

dir=${1:-${EXECD_INSTANCE_ROOT:-/var/cache/execd/instance-root}}
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
pkgs=systemd,systemd-sysv,dbus,curl,ca-certificates,iproute2,procps,git,iptables,docker.io
stamp="$suite $pkgs"

if [ -f "$dir/.execd-instance-root" ] && [ "$(cat "$dir/.execd-instance-root")" = "$stamp" ]; then
  exit 0
fi
command -v debootstrap >/dev/null || {
  echo "build-instance-root: needs debootstrap: apt-get install debootstrap" >&2
  exit 1
}
rm -rf "$dir.tmp"
mkdir -p "$(dirname "$dir")"
start=$SECONDS
debootstrap --variant=minbase --include="$pkgs" "$suite" "$dir.tmp" "$mirror" >"$dir.log" 2>&1 || {
  echo "build-instance-root: debootstrap failed; the end of $dir.log:" >&2
  tail -n 20 "$dir.log" >&2
  exit 1
}
# A machine-id is made at first boot, as on a fresh cloud instance.
: >"$dir.tmp/etc/machine-id"
echo "$stamp" >"$dir.tmp/.execd-instance-root"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
echo "build-instance-root: $dir built in $((SECONDS - start))s"

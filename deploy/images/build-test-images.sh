#!/usr/bin/env bash
# Builds the container images that the docker and gvisor tests use, without
# any registry: a root file system made from the host's busybox-static
# (Debian package busybox-static), imported with `docker import`.
#
#   execd-test/busybox:latest   /bin/busybox and its applets as symbolic
#                               links in /bin, a minimal /etc; CMD /bin/sh
#
# Usage: deploy/images/build-test-images.sh   (needs a running dockerd)
#
# It is idempotent: each run re-imports the images and removes the ones
# they replace.
set -euo pipefail

busybox=${BUSYBOX:-/bin/busybox}
if ! "$busybox" --help >/dev/null 2>&1 || file -L "$busybox" 2>/dev/null | grep -q 'dynamically linked'; then
  echo "build-test-images: need a static busybox at $busybox: apt-get install busybox-static" >&2
  exit 1
fi
docker info >/dev/null 2>&1 || {
  echo "build-test-images: cannot reach the Docker daemon: start dockerd (or set DOCKER_HOST)" >&2
  exit 1
}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

mkdir -p "$root"/{bin,etc,tmp,root,proc,sys,dev,workspace}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
# The applets' links must point at /bin/busybox inside the image, so they
# are made from inside the root file system.
chroot "$root" /bin/busybox --install -s /bin
ln -s bin "$root/sbin"
mkdir -p "$root/usr"
ln -s ../bin "$root/usr/bin"
ln -s ../bin "$root/usr/sbin"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
# A file the tests compare with the host's: a step sees the image's /etc.
echo 'execd-test-image' >"$root/etc/execd-test-image"

import() {
  local tag=$1 old new
  old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  new=$(tar -C "$root" --numeric-owner --owner=0 --group=0 -c . |
    docker import \
      --change 'CMD ["/bin/sh"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'LABEL execd.test-image=true' \
      - "$tag")
  if [ -n "$old" ] && [ "$old" != "$new" ]; then
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
  echo "build-test-images: $tag $new"
}

import execd-test/busybox:latest

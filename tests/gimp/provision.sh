#!/usr/bin/env bash
# Provision a Debian 13 root folder with GIMP 3.0.4 and its Python plug-in support, for the
# real-GIMP tests (recipe: GIMP 3 is not packaged for Debian 12; it runs in a chroot).
# Cached outside the checkout, keyed by this script's contents; built in a temporary
# folder and renamed into place only when complete. Prints the root's path last.
set -euo pipefail

packages="gimp python3-gi gir1.2-gimp-3.0 dbus-daemon xvfb xdotool imagemagick xauth"
cache="${STYLIZE_CACHE:-$HOME/.cache/stylize}"
key=$(sha256sum "$0" | cut -c1-12)
root="$cache/gimp-root-$key"

if [ -f "$root/.complete" ]; then
    echo "$root"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "provision.sh: building the GIMP root needs root (debootstrap, chroot)" >&2
    exit 3
fi
if ! command -v debootstrap >/dev/null; then
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
fi
mkdir -p "$cache"
building="$cache/gimp-root-$key.building.$$"
trap 'rm -rf "$building"' EXIT
debootstrap --variant=minbase trixie "$building" http://deb.debian.org/debian >&2
cp /etc/resolv.conf "$building/etc/"
unshare -m sh -c "mount -t proc proc '$building/proc' && chroot '$building' sh -c \
  'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages'" >&2
touch "$building/.complete"
rm -rf "$root"
mv "$building" "$root"
trap - EXIT
echo "$root"

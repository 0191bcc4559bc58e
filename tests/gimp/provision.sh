#!/usr/bin/env bash
# Provision a Debian root folder with GIMP 3 and its Python plug-in support, for the
# real-GIMP tests (GIMP 3 is not packaged for the host's Debian 12; it runs in a chroot).
#
#   provision.sh 3.0    GIMP 3.0.x from Debian 13 (trixie)
#   provision.sh 3.2    GIMP 3.2.x from Debian unstable (sid)
#
# Cached outside the checkout, keyed by this script's contents and the version; built in
# a temporary folder and renamed into place only when complete. Prints the root's path last.
set -euo pipefail

version="${1:-3.0}"
case "$version" in
    3.0) suite=trixie ;;
    3.2) suite=sid ;;
    *) echo "provision.sh: unknown GIMP version '$version' (3.0 or 3.2)" >&2; exit 2 ;;
esac
packages="gimp python3-gi gir1.2-gimp-3.0 dbus-daemon xvfb xdotool imagemagick xauth"
cache="${STYLIZE_CACHE:-$HOME/.cache/stylize}"
key=$( (cat "$0"; echo "$version") | sha256sum | cut -c1-12)
root="$cache/gimp-$version-root-$key"

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
building="$cache/gimp-$version-root-$key.building.$$"
trap 'rm -rf "$building"' EXIT
debootstrap --variant=minbase "$suite" "$building" http://deb.debian.org/debian >&2
cp /etc/resolv.conf "$building/etc/"
# Unstable's Release file may be past its Valid-Until date on a snapshot mirror.
echo 'Acquire::Check-Valid-Until "false";' > "$building/etc/apt/apt.conf.d/99no-check-valid-until"
unshare -m sh -c "mount -t proc proc '$building/proc' && chroot '$building' sh -c \
  'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages'" >&2
touch "$building/.complete"
rm -rf "$root"
mv "$building" "$root"
trap - EXIT
echo "$root"

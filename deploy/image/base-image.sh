#!/usr/bin/env bash
# Make a Debian bookworm base image with Python for building tgfleet's image where no
# container registry can be reached (CI here; air-gapped hosts): debootstrap's minimal
# variant plus Debian's python3, python3-venv and ca-certificates, from deb.debian.org,
# imported as localhost/tgfleet-base:bookworm. Use it with
#   podman build --build-arg BASE_IMAGE=localhost/tgfleet-base:bookworm -t tgfleet .
#
# The root filesystem's tarball is kept in ${DEPLOY_CHECKS_CACHE:-~/.cache/tgfleet-ci}/base/, so
# a second run (or a fresh podman store) costs an import, not a debootstrap. --refresh makes
# a new one (for Debian's point releases and security fixes).
#
# Needs root (debootstrap) and podman. PODMAN may carry flags: PODMAN="podman --root /x".
set -euo pipefail

image=localhost/tgfleet-base:bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache="${DEPLOY_CHECKS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tgfleet-ci}"
tarball="$cache/base/tgfleet-base-bookworm.tar"
read -r -a podman <<<"${PODMAN:-podman}"

refresh=
case "${1:-}" in
    --refresh) refresh=1 ;;
    "") ;;
    *) echo "usage: $0 [--refresh]" >&2; exit 2 ;;
esac

if [ -z "$refresh" ] && "${podman[@]}" image exists "$image"; then
    echo "$image"
    exit 0
fi

if [ -n "$refresh" ] || [ ! -s "$tarball" ]; then
    [ "$(id -u)" = 0 ] || { echo "debootstrap needs root" >&2; exit 1; }
    mkdir -p "$(dirname "$tarball")"
    rootfs=$(mktemp -d "$cache/base/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs" "$tarball.$$.partial"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$mirror" >"$cache/base/debootstrap.log" 2>&1 \
        || { tail -n 30 "$cache/base/debootstrap.log" >&2; exit 1; }
    cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES
    rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*
    tar --numeric-owner -C "$rootfs" -cf "$tarball.$$.partial" .
    mv "$tarball.$$.partial" "$tarball"
fi

"${podman[@]}" import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    "$tarball" "$image" >/dev/null
echo "$image"

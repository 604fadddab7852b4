#!/usr/bin/env bash
# Fetches Debian's busybox-static for <arch> into .cache/busybox/<arch>/root.
# The version is the one the host's busybox-static has (mkrootfs.sh takes the
# applet list from the host binary), or apt's candidate if the host has none.
#
#   rootfs/fetch-busybox.sh aarch64|x86_64
set -euo pipefail
source "$(dirname "$0")/lib.sh"
set_arch "${1:-}"

host_v=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || true)
want=busybox-static:$DEB_ARCH
[[ -n $host_v ]] && want="$want=$host_v"

mkdir -p "$BUSYBOX_CACHE"
cd "$BUSYBOX_CACHE"
if [[ -f package && $(<package) == "$want" && -x root/bin/busybox ]]; then
    log "$want already in $BUSYBOX_CACHE"
    exit 0
fi
rm -rf root package ./*.deb
if ! apt_download "$want"; then
    log "WARNING: $want is not available; taking apt's candidate busybox-static:$DEB_ARCH"
    log "WARNING: its applet list may differ from the host busybox's"
    want=busybox-static:$DEB_ARCH
    apt_download "$want" || die "downloading $want failed"
fi
dpkg -x ./*.deb root
[[ -x root/bin/busybox ]] || die "the busybox-static package has no bin/busybox"
rm -f ./*.deb
echo "$want" >package
log "$want ready in $BUSYBOX_CACHE"

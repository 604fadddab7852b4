#!/usr/bin/env bash
# Fetches Debian's kernel package for <arch> and unpacks it into
# .cache/kernel/<arch>/root, with modules.dep generated (the .deb has none:
# its postinst makes it). Nothing is done when the cache is already there.
#
#   rootfs/fetch-kernel.sh aarch64|x86_64
#
# Afterwards .cache/kernel/<arch>/release holds the kernel release string
# (the /lib/modules directory name), e.g. 6.12.117+deb12-arm64.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
set_arch "${1:-}"

mkdir -p "$KERNEL_CACHE"
cd "$KERNEL_CACHE"

wanted_release="$KERNEL_VERSION-$KERNEL_FLAVOUR"
if [[ -f release && $(<release) == "$wanted_release" && -f root/lib/modules/$wanted_release/modules.dep ]]; then
    log "kernel $wanted_release already in $KERNEL_CACHE"
    exit 0
fi

# Debian names the package after the release; arm64 is a foreign
# architecture on this host.
pkg_for() {
    if [[ $DEB_ARCH == amd64 ]]; then echo "linux-image-$1"; else echo "linux-image-$1:$DEB_ARCH"; fi
}
has_candidate() {
    local c
    c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
    [[ -n $c && $c != "(none)" ]]
}
# The newest linux-image-6.12.<n>+deb12-<flavour> apt knows.
newest_release() {
    apt-cache pkgnames linux-image-6.12. 2>/dev/null |
        grep -E "^linux-image-6\.12\.[0-9]+\+deb12-${KERNEL_FLAVOUR}\$" |
        sed 's/^linux-image-//' | sort -V | tail -n 1
}
download() {
    rm -f ./*.deb
    apt_download "$(pkg_for "$1")"
}

release=$wanted_release
# A fallback kernel fetched earlier stays in use while the pinned one is
# still unavailable (no download at every build).
if [[ -f release && -f root/lib/modules/$(<release)/modules.dep ]] && ! has_candidate "$(pkg_for "$release")"; then
    log "WARNING: the pinned kernel $wanted_release is not available; using the cached fallback $(<release)"
    exit 0
fi
if ! has_candidate "$(pkg_for "$release")" || ! download "$release"; then
    log "$(pkg_for "$release") is not available; refreshing apt's package lists"
    if [[ $(id -u) -eq 0 ]]; then apt-get update -q; else sudo apt-get update -q; fi
    if ! has_candidate "$(pkg_for "$release")" || ! download "$release"; then
        newest=$(newest_release)
        [[ -n $newest ]] || die "no linux-image-6.12.*+deb12-$KERNEL_FLAVOUR package is known to apt"
        log "WARNING: the pinned kernel $wanted_release is gone from the mirror;"
        log "WARNING: falling back to the newest 6.12 kernel apt knows: $newest"
        log "WARNING: update KERNEL_VERSION in rootfs/lib.sh to pin it"
        release=$newest
        download "$release" || die "downloading $(pkg_for "$release") failed"
    fi
fi

deb=$(ls ./*.deb)
log "unpacking $deb"
rm -rf root release
dpkg -x "$deb" root
[[ -d root/lib/modules/$release ]] || die "$deb has no lib/modules/$release"
log "generating modules.dep for $release"
depmod -b root "$release"
rm -f "$deb"
echo "$release" >release
log "kernel $release ready in $KERNEL_CACHE"

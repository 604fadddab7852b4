# Shared by the rootfs/*.sh scripts: paths and per-architecture names.
# Source it after setting ARCH (aarch64 | x86_64).

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${ACCORD_CACHE_DIR:-$REPO/.cache}

# The pinned kernel; fetch-kernel.sh falls back to the newest 6.12.x if the
# mirror no longer serves it.
KERNEL_VERSION=${ACCORD_KERNEL_VERSION:-6.12.117+deb12}

log() { printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Runs apt-get download in the current directory. As root apt drops to the
# _apt user for downloads, which cannot write here: stay root.
apt_download() {
    apt-get download -q -o APT::Sandbox::User=root "$@"
}

set_arch() {
    ARCH=${1:-}
    case "$ARCH" in
        aarch64)
            DEB_ARCH=arm64
            KERNEL_FLAVOUR=arm64
            RUST_TARGET=aarch64-unknown-linux-musl
            # The compositor is built for glibc (fetch-gfxlibs.sh says why).
            GNU_TARGET=aarch64-unknown-linux-gnu
            GNU_TRIPLET=aarch64-linux-gnu
            GNU_LOADER=lib/ld-linux-aarch64.so.1
            GNU_LINKER=aarch64-linux-gnu-gcc
            ;;
        x86_64)
            DEB_ARCH=amd64
            KERNEL_FLAVOUR=amd64
            RUST_TARGET=x86_64-unknown-linux-musl
            GNU_TARGET=x86_64-unknown-linux-gnu
            GNU_TRIPLET=x86_64-linux-gnu
            GNU_LOADER=lib64/ld-linux-x86-64.so.2
            GNU_LINKER=cc
            ;;
        *) die "unknown architecture '${ARCH}' (want aarch64 or x86_64)" ;;
    esac
    OUT_DIR=${ACCORD_OUT_DIR:-$REPO/out}/$ARCH
    KERNEL_CACHE=$CACHE_DIR/kernel/$ARCH
    BUSYBOX_CACHE=$CACHE_DIR/busybox/$ARCH
}

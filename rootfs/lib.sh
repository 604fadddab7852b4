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

# copy_debian_libs FROM TO LIB...: copies each LIB from an unpacked set of
# Debian packages (FROM/lib/<triplet> or FROM/usr/lib/<triplet>) to
# TO/lib/<triplet>, and the loader to TO/<where programs look for it>.
copy_debian_libs() {
    local from=$1 to=$2 l src
    shift 2
    mkdir -p "$to/lib/$GNU_TRIPLET" "$to/$(dirname "$GNU_LOADER")"
    for l in "$@"; do
        src=$from/lib/$GNU_TRIPLET/$l
        [[ -e $src ]] || src=$from/usr/lib/$GNU_TRIPLET/$l
        [[ -e $src ]] || die "$l is not in the packages unpacked in $from"
        cp -L "$src" "$to/lib/$GNU_TRIPLET/$l"
    done
    cp -L "$from/lib/$GNU_TRIPLET/${GNU_LOADER##*/}" "$to/$GNU_LOADER" 2>/dev/null || cp -L "$from/$GNU_LOADER" "$to/$GNU_LOADER"
}

# check_needed LIBDIR FILE...: dies unless every library each FILE names
# (DT_NEEDED) is in LIBDIR or is the loader: a missing one would only show
# as a program that does not start on the device.
check_needed() {
    local libdir=$1 b need
    shift
    for b in "$@"; do
        for need in $(objdump -p "$b" | awk '/NEEDED/ {print $2}'); do
            [[ -e $libdir/$need || $need == "${GNU_LOADER##*/}" ]] || die "$b needs $need, which is not in $libdir"
        done
    done
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

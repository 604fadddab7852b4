#!/usr/bin/env bash
# Installs what building and booting Accord needs on a Debian 12 host, and
# nothing that is already there. Safe to run again: a second run only checks.
#
#   rootfs/setup-host.sh            check and install
#   rootfs/setup-host.sh --check    check only; exit 1 if something is missing
#   rootfs/setup-host.sh --gui      also QEMU's GTK and SDL displays
#                                   (qemu-system-gui), for `make qemu` in a
#                                   window on a desktop
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CHECK_ONLY=0
GUI=0
for arg in "$@"; do
    case "$arg" in
        --check) CHECK_ONLY=1 ;;
        --gui) GUI=1 ;;
        *) die "unknown option $arg (expected --check or --gui)" ;;
    esac
done

# Host packages (amd64) and the foreign-architecture ones. qemu-utils is
# handled apart: its version must equal qemu-system-common's (see below).
PACKAGES=(
    qemu-system-arm qemu-system-x86 qemu-system-common qemu-system-data ipxe-qemu
    musl-tools cpio e2fsprogs busybox-static kmod zstd xz-utils gzip dbus util-linux binutils dosfstools
    # The compositor: pixman and xkbcommon to link the host build against,
    # the aarch64 glibc cross linker for the image's build, and weston's
    # demo clients, wl-clipboard (wl-copy, wl-paste) and wayland-utils
    # (wayland-info) for the compositor's tests.
    libpixman-1-dev libxkbcommon-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross weston wl-clipboard wayland-utils
    # The system UI's font (DejaVu Sans, into the image's /system/fonts).
    fonts-dejavu-core
)
# QEMU's windows: its version goes with qemu-system-common's (below).
[[ $GUI -eq 1 ]] && PACKAGES+=(qemu-system-gui)
FOREIGN_ARCH=arm64
FOREIGN_PACKAGES=(musl-dev:arm64)
RUST_TARGETS=(aarch64-unknown-linux-musl x86_64-unknown-linux-musl aarch64-unknown-linux-gnu x86_64-unknown-linux-gnu)

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null; then
    SUDO=(sudo)
else
    SUDO=(false)
fi

# "<version>" of an installed package, empty when not installed.
installed_version() {
    dpkg-query -W -f='${db:Status-Abbrev} ${Version}\n' "$1" 2>/dev/null | awk '$1 == "ii" { print $2 }'
}

missing=()
need_foreign_arch=0

if ! dpkg --print-foreign-architectures | grep -qx "$FOREIGN_ARCH"; then
    log "missing: dpkg foreign architecture $FOREIGN_ARCH"
    need_foreign_arch=1
fi
for p in "${PACKAGES[@]}" "${FOREIGN_PACKAGES[@]}"; do
    if [[ -z $(installed_version "$p") ]]; then
        log "missing: package $p"
        missing+=("$p")
    fi
done

# Debian 12 images may carry a qemu-utils from backports whose Breaks
# conflict with bookworm's qemu-system-*: qemu-utils must be at the same
# version as qemu-system-common.
qemu_utils_ok=1
common_v=$(installed_version qemu-system-common)
utils_v=$(installed_version qemu-utils)
if [[ -z $common_v || -z $utils_v || $common_v != "$utils_v" ]]; then
    log "missing: qemu-utils at qemu-system-common's version (have '${utils_v:-none}', qemu-system-common '${common_v:-none}')"
    qemu_utils_ok=0
fi

# Rust: cargo itself cannot be installed from here (no network to the
# toolchain servers); the musl targets can.
command -v cargo >/dev/null || die "cargo is not installed: install a Rust toolchain (rustup) first"
missing_targets=()
if command -v rustup >/dev/null; then
    have_targets=$(rustup target list --installed)
    for t in "${RUST_TARGETS[@]}"; do
        grep -qx "$t" <<<"$have_targets" || missing_targets+=("$t")
    done
else
    sysroot=$(rustc --print sysroot)
    for t in "${RUST_TARGETS[@]}"; do
        [[ -d $sysroot/lib/rustlib/$t/lib ]] || missing_targets+=("$t")
    done
fi
for t in "${missing_targets[@]}"; do log "missing: rust target $t"; done
# make test runs cargo fmt --check and clippy.
missing_components=()
cargo fmt --version >/dev/null 2>&1 || missing_components+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || missing_components+=(clippy)
for c in "${missing_components[@]}"; do log "missing: rust component $c"; done

if [[ $need_foreign_arch -eq 0 && ${#missing[@]} -eq 0 && $qemu_utils_ok -eq 1 && ${#missing_targets[@]} -eq 0 && ${#missing_components[@]} -eq 0 ]]; then
    log "host is ready (nothing to install)"
    exit 0
fi
if [[ $CHECK_ONLY -eq 1 ]]; then
    log "host is not ready: run rootfs/setup-host.sh (or make setup)"
    exit 1
fi

if [[ $need_foreign_arch -eq 1 || ${#missing[@]} -gt 0 || $qemu_utils_ok -eq 0 ]]; then
    if [[ $need_foreign_arch -eq 1 ]]; then
        log "adding dpkg foreign architecture $FOREIGN_ARCH"
        "${SUDO[@]}" dpkg --add-architecture "$FOREIGN_ARCH"
    fi
    log "running apt-get update"
    "${SUDO[@]}" apt-get update -q
    qemu_v=$(apt-cache policy qemu-system-common | awk '/Candidate:/ { print $2 }')
    [[ -n $qemu_v && $qemu_v != "(none)" ]] || die "apt knows no qemu-system-common candidate"
    install=("${missing[@]}")
    # qemu-system-common goes in at the candidate version, and qemu-utils with it.
    for i in "${!install[@]}"; do
        [[ ${install[$i]} == qemu-system-common || ${install[$i]} == qemu-system-gui ]] && install[$i]="${install[$i]}=$qemu_v"
    done
    if [[ $(installed_version qemu-utils) != "$qemu_v" ]]; then
        install+=("qemu-utils=$qemu_v")
    fi
    if [[ ${#install[@]} -gt 0 ]]; then
        log "installing ${install[*]}"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends --allow-downgrades "${install[@]}"
    fi
fi

if [[ ${#missing_targets[@]} -gt 0 ]]; then
    command -v rustup >/dev/null || die "rust targets ${missing_targets[*]} are missing and rustup is not installed"
    log "installing rust targets ${missing_targets[*]}"
    rustup target add "${missing_targets[@]}"
fi
if [[ ${#missing_components[@]} -gt 0 ]]; then
    command -v rustup >/dev/null || die "rust components ${missing_components[*]} are missing and rustup is not installed"
    log "installing rust components ${missing_components[*]}"
    rustup component add "${missing_components[@]}"
fi
log "host is ready"

#!/usr/bin/env bash
# Creates out/<arch>/data.img, the /data disk (ext4 labelled "data",
# 256 MiB sparse), if it does not exist. With --reset, an existing one is
# deleted first (all persisted state is lost).
#
#   rootfs/mkdata.sh aarch64|x86_64 [--reset]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
set_arch "${1:-}"
DATA=$OUT_DIR/data.img
if [[ ${2:-} == --reset && -e $DATA ]]; then
    log "deleting $DATA"
    rm -f "$DATA"
fi
if [[ -f $DATA ]]; then
    exit 0
fi
mkdir -p "$OUT_DIR"
empty=$(mktemp -d)
trap 'rmdir "$empty"' EXIT
mkfs.ext4 -q -F -L data -E root_owner=0:0 -d "$empty" "$DATA" 256M
log "created $DATA (ext4, 256 MiB sparse)"

#!/usr/bin/env bash
# Creates out/<arch>/data.img, the /data disk (256 MiB sparse, blank), if it
# does not exist. The system formats a blank disk on its first boot (the
# storage daemon's recovery path, services/storage/src/data.rs), so a fresh
# image takes that path. With --reset, an existing one is deleted first
# (all persisted state is lost).
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
truncate -s 256M "$DATA.tmp"
mv "$DATA.tmp" "$DATA"
log "created $DATA (256 MiB sparse, blank: formatted as ext4 at first boot)"

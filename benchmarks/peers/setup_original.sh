#!/usr/bin/env bash
# Builds the stand-in environment for the ORIGINAL SETR code (benchmarks/peers/.original/.venv) on the project's
# own torch, from a user's checkouts of the two public repositories (nothing of them is copied into this project):
#
#   git clone https://github.com/fudan-zvg/SETR        /path/to/SETR && git -C /path/to/SETR checkout 1361561
#   git clone https://github.com/open-mmlab/mmcv       /path/to/mmcv && git -C /path/to/mmcv checkout v1.2.2
#
# (The SETR repository holds a large poster PDF; `git clone --filter=blob:limit=10m` skips it.) mmcv 1.2.2's own
# Python sources run on today's torch without its compiled ops: `benchmarks/peers/original_env.py` puts a
# stand-in for `mmcv.ops` (every name raises on use; SETR needs none) and shims for two names removed from
# torch (`torch._six`, `SyncBatchNorm._specify_ddp_gpu_num`) in place before the original's `mmseg` is imported,
# and on one process SyncBN becomes BatchNorm (what the original computes on one GPU).
# Usage: bash benchmarks/peers/setup_original.sh /path/to/SETR /path/to/mmcv     (needs `make install` first)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SETR_DIR="$(cd "${1:?usage: setup_original.sh SETR_CHECKOUT MMCV_CHECKOUT}" && pwd)"
MMCV_DIR="$(cd "${2:?usage: setup_original.sh SETR_CHECKOUT MMCV_CHECKOUT}" && pwd)"
test -f "$SETR_DIR/mmseg/models/backbones/vit.py" || { echo "$SETR_DIR: not a checkout of fudan-zvg/SETR" >&2; exit 2; }
test -f "$MMCV_DIR/mmcv/version.py" || { echo "$MMCV_DIR: not a checkout of open-mmlab/mmcv" >&2; exit 2; }
grep -q "__version__ = '1.2" "$MMCV_DIR/mmcv/version.py" || echo "warning: $MMCV_DIR is not mmcv 1.2.x" >&2
PEER="$ROOT/benchmarks/peers/.original/.venv"  # (.venv/ is git-ignored)
PROJECT_SITE="$("$ROOT/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
BASE_PY="$("$ROOT/.venv/bin/python" -c 'import sys; print(sys._base_executable)')"
test -x "$PEER/bin/python" || "$BASE_PY" -m venv "$PEER"
PEER_SITE="$("$PEER/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# the original's sources first (its `mmseg` 0.x, mmcv 1.2.2), then the project's torch / numpy / OpenCV
printf '%s\n%s\n' "$SETR_DIR" "$MMCV_DIR" > "$PEER_SITE/aa_original_sources.pth"
echo "$PROJECT_SITE" > "$PEER_SITE/zz_project_site.pth"
"$PEER/bin/python" -m pip install -q addict "yapf<0.41" terminaltables prettytable
"$PEER/bin/python" -c "
import sys; sys.path.insert(0, '$ROOT/benchmarks/peers')
import original_env; original_env.install()
import torch, mmcv, mmseg
print('original venv: torch', torch.__version__, 'mmcv', mmcv.__version__, '(sources, ops stand-in)', 'SETR mmseg',
      mmseg.__version__, 'from', mmseg.__file__)"

#!/usr/bin/env bash
# Builds MMSegmentation 1.2.2 in its own venv (benchmarks/peers/.venv) on the project's own torch:
#   mmcv-lite 2.1.0 (mmcv without the compiled ops), mmengine 0.10.7, mmsegmentation 1.2.2.
# torch / torchvision / numpy come from the project's venv (a .pth file puts its site-packages after the peer
# venv's own), so both sides of the comparison run the same torch build; the peer packages live only here.
# mmcv-lite has no compiled `mmcv.ops`; MMSeg imports a few names from it at import time but SETR uses none, so
# `benchmarks/peers/mmcv_ops_stub.py` installs a stand-in module whose every attribute raises on use.
# Usage: bash benchmarks/peers/setup_mmseg.sh   (from the repository root; needs `make install` first)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PEER="$ROOT/benchmarks/peers/.venv"
PROJECT_SITE="$("$ROOT/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
BASE_PY="$("$ROOT/.venv/bin/python" -c 'import sys; print(sys._base_executable)')"
test -x "$PEER/bin/python" || "$BASE_PY" -m venv "$PEER"
PEER_SITE="$("$PEER/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$PROJECT_SITE" > "$PEER_SITE/zz_project_site.pth"   # after the peer's own packages
"$PEER/bin/python" -m pip install -q "mmengine==0.10.7" "mmcv-lite==2.1.0" "mmsegmentation==1.2.2" \
    ftfy regex prettytable
"$PEER/bin/python" -c 'import torch, mmengine, mmcv, mmseg; print("peer venv:", "torch", torch.__version__,
    "mmengine", mmengine.__version__, "mmcv(-lite)", mmcv.__version__, "mmseg", mmseg.__version__)' 2>&1 | tail -1

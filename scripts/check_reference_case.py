#!/usr/bin/env python3
"""Check golden reference cases computed by the original code.

    python scripts/check_reference_case.py [--device cuda] [--trust-checkpoint] FIXTURE.pt [FIXTURE.pt ...]

Builds the model each case's ``config`` describes, loads its original-format ``state_dict`` through the same
converter users get, runs every output the case names, prints the max abs error per output and exits non-zero
if any exceeds its tolerance (SETR: 2e-5 in fp32, argmax maps must match; HLG: 1e-4 x max|output|).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

import torch  # noqa: E402

from setr.errors import SetrError  # noqa: E402
from setr.parity.check import check_case, load_case  # noqa: E402


def main(argv: list[str]) -> int:
    device = "cpu"
    trust = "--trust-checkpoint" in argv  # unsafe: unpickles whatever the case file holds
    argv = [a for a in argv if a != "--trust-checkpoint"]
    if argv[:1] == ["--device"] and len(argv) > 1:
        device, argv = argv[1], argv[2:]
    if not argv:
        print(__doc__.strip())
        return 2
    torch.set_grad_enabled(False)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 on GPUs too
    torch.backends.cudnn.allow_tf32 = False
    failed = 0
    for path in argv:
        try:
            checks = check_case(load_case(path, trust), device, image_dir=Path(path).parent)
        except SetrError as exc:
            print(f"{path}: ERROR {exc}")
            failed += 1
            continue
        bad = [c for c in checks if not c.ok]
        print(f"{path}: {'ok' if not bad else 'FAIL'} ({len(checks)} outputs)")
        for c in checks:
            flag = "ok  " if c.ok else "FAIL"
            note = f"  [{c.note}]" if c.note else ""
            print(f"  {flag} {c.name:<18} max_abs_err={c.max_abs_err:.3e}  tol={c.tolerance:.1e}{note}")
        failed += bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Argmax agreement of the fast inference paths (``auto`` = bf16 autocast where the CPU has bf16 units, ``int8``)
with the fp32 path, through ``Segmenter`` exactly as ``setr predict`` runs them, on two image sets:

* a trained model on its own validation images (the demo model: ``make demo`` or
  ``setr demo --work-dir DIR``), and
* photographs (``tests/fixtures/setr_pipeline/*.png``) through the same model and test pipeline.

Reported per path and image set: agreement on all pixels, and on the pixels whose fp32 top-2 probability margin
exceeds 0.02 (the issue's target: >= 99.5% there); a near-tie flips under any change of summation order.

    .venv/bin/python benchmarks/fast_path_agreement.py --checkpoint work_dirs/demo/final.safetensors \
        --images-dir work_dirs/demo/data/images/val --images 40 --precisions auto int8
"""
from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import torch

from setr.model_files import load_model
from setr.inference import Segmenter
from setr.io.images import find_images, read_image

ROOT = Path(__file__).resolve().parents[1]


def agreement(ref: Segmenter, fast: Segmenter, images) -> dict:
    agree = total = agree_conf = total_conf = 0
    for img in images:
        pa, pb = ref.predict_probs(img), fast.predict_probs(img)
        a, b = pa.argmax(0), pb.argmax(0)
        top2 = pa.topk(2, dim=0).values
        confident = (top2[0] - top2[1]) > 0.02
        same = a == b
        agree += int(same.sum())
        total += a.numel()
        agree_conf += int(same[confident].sum())
        total_conf += int(confident.sum())
    return {"images": len(images), "pixels": total, "agreement": agree / total,
            "confident_fraction": total_conf / total, "agreement_confident": agree_conf / max(total_conf, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a trained model (ours, config inside)")
    ap.add_argument("--images-dir", required=True, help="its validation images")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--photos", default=str(ROOT / "tests/fixtures/setr_pipeline/*.png"))
    ap.add_argument("--precisions", nargs="+", default=["auto", "int8"])
    ap.add_argument("--json")
    args = ap.parse_args()
    sets = {"validation images": [read_image(p) for p in find_images([args.images_dir])[: args.images]],
            "photographs": [read_image(p) for p in sorted(glob.glob(args.photos))]}
    model, cfg = load_model(args.checkpoint)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ref = Segmenter(model, cfg, precision="fp32")
    out = {}
    for prec in args.precisions:
        m, _ = load_model(args.checkpoint)
        m.load_state_dict(state)
        fast = Segmenter(m, cfg, precision=prec)
        for name, images in sets.items():
            r = agreement(ref, fast, images)
            out[f"{fast.precision} / {name}"] = r
            print(f"{fast.precision:5s} vs fp32 on {r['images']} {name}: {100 * r['agreement']:.3f}% of all pixels, "
                  f"{100 * r['agreement_confident']:.3f}% of the {100 * r['confident_fraction']:.1f}% whose fp32 "
                  f"top-2 margin exceeds 0.02", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()

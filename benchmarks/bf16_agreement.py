"""Argmax agreement of the default fast path (bf16 autocast, batched windows, channels-last heads) with the
fp32 path, on natural-looking generated images (textured shapes, smooth lighting) at 512x683.

    .venv/bin/python benchmarks/bf16_agreement.py [--preset P] [--images N]

Without --checkpoint, random weights are used (no trained checkpoint of a real preset is available offline):
their class probabilities are near-uniform, so nearly every pixel is a near-tie and the agreement says little;
the script reports the agreement on confident pixels separately. For a meaningful number pass a trained
checkpoint, e.g. the demo model on its validation images:

    .venv/bin/python benchmarks/bf16_agreement.py --preset setr_demo_pup_tiny_64x64_shapes \
        --checkpoint work_dirs/demo/final.safetensors --images-dir work_dirs/demo/data/images/val --images 40
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from setr.config import build_model
from setr.data.synthetic import make_scene
from setr.data.transforms import normalise_tensor as normalise
from setr.inference import Segmenter, to_tensor
from setr import presets


def natural_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img, _, _ = make_scene(rng, h, w, num_classes=6, max_shapes=6)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    light = 0.75 + 0.35 * np.sin(2.5 * xx + rng.uniform(0, 6)) * np.cos(1.7 * yy + rng.uniform(0, 6))
    return np.clip(img * light[..., None], 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="SETR_PUP_DeiT_512x512_160k_ade20k_bs_16")
    ap.add_argument("--checkpoint")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--images-dir", help="use these images instead of generated ones")
    args = ap.parse_args()
    preset = presets.get(args.preset)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    if args.images_dir:
        from setr.io.images import find_images, read_image

        images = [read_image(p) for p in find_images([args.images_dir])[: args.images]]
    else:
        images = [natural_image(rng, 512, 683) for _ in range(args.images)]
    if args.checkpoint:
        from setr.model_files import load_model

        model, cfg = load_model(args.checkpoint, preset.model)
    else:
        cfg = preset.model
        model = build_model(cfg, with_aux=False)
        model.train()  # estimate BatchNorm statistics on this kind of image
        with torch.no_grad():
            for img in images[:2]:
                model.encode_decode(normalise(to_tensor(img)[..., :512, :512], cfg.mean, cfg.std))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fp32 = Segmenter(model, cfg, precision="fp32")
    fast_model = build_model(cfg, with_aux=False)
    fast_model.load_state_dict(state)
    fast = Segmenter(fast_model, cfg, precision="auto")
    agree, total, agree_conf, total_conf = 0, 0, 0, 0
    for img in images:
        pa, pb = fp32.predict_probs(img), fast.predict_probs(img)
        a, b = pa.argmax(0), pb.argmax(0)
        top2 = pa.topk(2, dim=0).values
        confident = (top2[0] - top2[1]) > 0.02  # pixels whose fp32 decision is not a near-tie
        agree += int((a == b).sum())
        total += a.numel()
        agree_conf += int((a == b)[confident].sum())
        total_conf += int(confident.sum())
    print(f"{args.preset}: {fast.precision} vs fp32 argmax agreement {100 * agree / total:.3f}% over "
          f"{len(images)} images ({fast.mode}, {fast.window_batch} windows per batch); "
          f"{100 * agree_conf / max(total_conf, 1):.3f}% on the {100 * total_conf / total:.1f}% of pixels whose fp32 "
          f"top-2 probability margin exceeds 0.02")


if __name__ == "__main__":
    main()

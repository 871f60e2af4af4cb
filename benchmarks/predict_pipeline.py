#!/usr/bin/env python3
"""Before / after the OpenCV test pipeline: decoding + resizing + normalising, and `setr predict` end to end.

    python benchmarks/predict_pipeline.py [--preset NAME] [--set KEY=VALUE ...] [--images 20] [--repeats 3]

"before" is the previous pipeline (Pillow decoding, float bilinear resize rounded to uint8 in PyTorch), "after"
the current one (OpenCV decoding and ``cv2.resize`` INTER_LINEAR on uint8, as the original). The 20 photographs
are crops and rescales of the three real photographs in tests/fixtures/setr_pipeline (odd sizes, written as
JPEG and PNG). Both variants run interleaved in one process (A B A B ...); the median of each is reported, so
the ratio is meaningful even on a busy machine. The default preset is a narrowed ADE20K SETR-Naive (the real
test scale 2048x512 and 512x512 sliding windows, a small encoder) so the pipeline's share is visible.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

import setr.inference as inference  # noqa: E402
from setr.io.images import read_image  # noqa: E402

NARROW = ["model.backbone.embed_dim=64", "model.backbone.depth=2", "model.backbone.num_heads=2",
          "model.decode_head.in_index=1", "model.decode_head.channels=32", "model.aux_heads=[]"]


def pil_read(path) -> np.ndarray:  # before: Pillow decoding
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def torch_resize(img: np.ndarray, size) -> np.ndarray:  # before: float bilinear, rounded
    if tuple(img.shape[:2]) == tuple(size):
        return img
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False).round_().clamp_(0, 255)
    return x[0].permute(1, 2, 0).to(torch.uint8).numpy()


def make_photos(folder: Path, n: int) -> list[Path]:
    sources = [read_image(p) for p in sorted((ROOT / "tests" / "fixtures" / "setr_pipeline").glob("*.png"))]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        y, x = int(rng.integers(0, h // 4)), int(rng.integers(0, w // 4))
        crop = src[y:, x:]
        f = rng.uniform(0.8, 1.6)
        crop = np.asarray(Image.fromarray(crop).resize((int(crop.shape[1] * f), int(crop.shape[0] * f))))
        path = folder / f"photo_{i:02d}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(crop).save(path, quality=92)
        paths.append(path)
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="SETR_Naive_512x512_160k_ade20k_bs_16")
    ap.add_argument("--set", nargs="*", default=None, help=f"default: {' '.join(NARROW)}")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    torch.manual_seed(0)
    seg = inference.Segmenter.from_preset(args.preset, overrides=NARROW if args.set is None else args.set,
                                          precision=args.precision)
    variants = {"before (Pillow + torch resize)": (pil_read, torch_resize),
                "after (OpenCV, as the original)": (read_image, inference.resize_image)}
    pre: dict[str, list[float]] = {k: [] for k in variants}
    e2e: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photos(Path(tmp), args.images)
        sizes = [seg.views(read_image(p).shape[:2])[0].size for p in photos]
        for rep in range(args.repeats + 1):  # the first round is a warm-up
            for name, (reader, resizer) in variants.items():
                t0 = time.perf_counter()
                for p, size in zip(photos, sizes):
                    inference.normalise_image(resizer(reader(p), size), seg.cfg.mean, seg.cfg.std)
                t1 = time.perf_counter()
                inference.resize_image = resizer
                try:
                    for i, p in enumerate(photos):  # what `setr predict` does per image
                        Image.fromarray(seg.predict(reader(p))).save(Path(tmp) / f"pred_{i}.png")
                finally:
                    inference.resize_image = variants["after (OpenCV, as the original)"][1]
                t2 = time.perf_counter()
                if rep:
                    pre[name].append(t1 - t0)
                    e2e[name].append(t2 - t1)
    print(f"{args.images} photographs ({min(s[0] * s[1] for s in sizes) / 1e6:.2f}-"
          f"{max(s[0] * s[1] for s in sizes) / 1e6:.2f} MPixel after resize), preset {args.preset} "
          f"narrowed, precision {seg.precision}, {torch.get_num_threads()} threads, median of {args.repeats}")
    base_pre, base_e2e = (statistics.median(v) for v in (pre[next(iter(pre))], e2e[next(iter(e2e))]))
    print(f"{'pipeline':<34} {'decode+resize+normalise':>24} {'predict (files written)':>24}")
    for name in variants:
        a, b = statistics.median(pre[name]), statistics.median(e2e[name])
        print(f"{name:<34} {a:>10.3f} s ({base_pre / a:4.2f}x) {b:>12.3f} s ({base_e2e / b:4.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

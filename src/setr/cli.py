"""The ``setr`` command line. Thin: every subcommand calls the library."""
from __future__ import annotations

import argparse
import logging
import json
import sys
from typing import Sequence

from . import argtypes
from .errors import SetrError


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, type=argtypes.device,
                   help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")


def _add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="discard the checkpoints of another run found in the work dir (a new run refuses to start "
                        "there otherwise)")


def _add_trust(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="UNSAFE: load .pth files that hold Python objects other than tensors and plain values "
                        "(torch.load weights_only=False), which runs any code stored in them; only for files "
                        "from a source you trust")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def _add_flip_directions(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flip-directions", nargs="+", choices=("horizontal", "vertical"), metavar="DIRECTION",
                   help="with --aug: the flipped views, horizontal and/or vertical (default: the preset's, "
                        "horizontal as every SETR config); each view is flipped back along its own axis")


def _add_speed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16", "int8"),
                   help="auto: bf16 where the hardware has bf16 matrix units, else fp32; fp32 is bit-faithful; "
                        "int8 (CPU): dynamic int8 encoder linear layers, the rest as auto")
    p.add_argument("--window-batch", type=_positive_int, default=None,
                   help="sliding windows per forward pass (default: 1 in fp32, 8 otherwise)")


def _device(name: str | None) -> str:
    from .engine.common import resolve_device

    return resolve_device(name)


# --------------------------------------------------------------------------- presets / info / flops
def cmd_presets(args: argparse.Namespace) -> int:
    from .presets import list_presets

    rows = [p.summary() for p in list_presets()]
    if args.dataset:
        rows = [r for r in rows if r["dataset"] == args.dataset]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'preset':<52} {'dataset':<15} {'crop':<8} {'backbone':<32} {'head':<10} {'mIoU':>6} {'ms':>6}")
    for r in rows:
        miou = f"{r['reported_mIoU']:.2f}" if r["reported_mIoU"] is not None else "-"
        ms = f"{r['reported_ms_mIoU']:.2f}" if r["reported_ms_mIoU"] is not None else "-"
        crop = "x".join(str(c) for c in r["crop"])
        print(f"{r['name']:<52} {r['dataset']:<15} {crop:<8} {r['backbone']:<32} {r['head']:<10} {miou:>6} {ms:>6}")
    if not args.dataset:
        from .detection.presets import list_detection_presets
        from .presets import list_classifier_presets

        print("\nImageNet classification (setr classify):")
        for c in list_classifier_presets():
            print(f"  {c.name:<50} published {c.published_params_m}M params / {c.published_gflops}G")
        print("\nCOCO detection (setr detect):")
        for d in list_detection_presets():
            print(f"  {d}")
    return 0


def cmd_hlg_info(args: argparse.Namespace) -> int:
    from .complexity import hlg_complexity
    from .presets import get_classifier_preset

    p = get_classifier_preset(args.preset)
    shape = tuple(args.shape) * (2 if len(args.shape) == 1 else 1) if getattr(args, "shape", None) else (224, 224)
    c = hlg_complexity(p.variant, shape)
    from dataclasses import asdict

    from .models.hlg import HLG_VARIANTS

    info = {"name": p.name, "variant": p.variant, "architecture": HLG_VARIANTS[p.variant],
            "params": {"total": c["params"]["classification"], "dense_backbone": c["params"]["dense_backbone"]},
            "gmacs": c["gmacs"], "gflops": c["gflops"], "shape": c["shape"],
            "published": {"params_m": p.published_params_m, "gflops": p.published_gflops,
                          "note": "the paper's G counts multiply-adds (MACs), without the stem"},
            "notes": list(p.notes), "recipe": asdict(p.recipe)}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{p.name}: depths {list(HLG_VARIANTS[p.variant]['depths'])}, dims {list(HLG_VARIANTS[p.variant]['embed_dims'])}")
    print(f"  params: {c['params']['classification'] / 1e6:.2f}M classification (1000 classes), "
          f"{c['params']['dense_backbone'] / 1e6:.2f}M dense backbone   [published {p.published_params_m}M]")
    print(f"  at {shape[0]}x{shape[1]}: {c['gmacs']['with_stem']:.2f} GMACs ({c['gflops']['with_stem']:.2f} GFLOPs), "
          f"{c['gmacs']['without_stem']:.2f} GMACs without the stem   [published {p.published_gflops}G]")
    for n in p.notes:
        print(f"  note: {n}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .complexity import build_on_meta, segmentor_param_counts
    from .config import build_model
    from .presets import get_preset, is_classifier_preset

    if is_classifier_preset(args.preset):
        return cmd_hlg_info(args)
    preset = get_preset(args.preset)
    counts = segmentor_param_counts(build_on_meta(build_model, preset.model))
    info = {"name": preset.name, "dataset": preset.dataset, "backbone": preset.backbone_name,
            "head": preset.head_name, "params": counts, "reported_mIoU": preset.reported_miou,
            "reported_ms_mIoU": preset.reported_ms_miou, "notes": list(preset.notes),
            "train": preset.to_dict()["train"], "data": preset.to_dict()["data"], "model": preset.model.to_dict()}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{preset.name}  ({preset.dataset}, {preset.backbone_name}, {preset.head_name})")
    for k, v in counts.items():
        print(f"  params {k:<12} {v:>13,d}  ({v / 1e6:.2f}M)")
    if preset.reported_miou is not None:
        print(f"  reported mIoU (single scale): {preset.reported_miou:.2f}")
    if preset.reported_ms_miou is not None:
        print(f"  reported mIoU (ms+flip): {preset.reported_ms_miou:.2f}")
    for n in preset.notes:
        print(f"  note: {n}")
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    from .complexity import build_on_meta, segmentor_flops, segmentor_param_counts
    from .config import build_model
    from .presets import get_preset, is_classifier_preset

    if is_classifier_preset(args.preset):
        return cmd_hlg_info(args)
    preset = get_preset(args.preset)
    shape = tuple(args.shape) if args.shape else preset.model.backbone.img_size
    if len(shape) == 1:
        shape = (shape[0], shape[0])
    model = build_on_meta(build_model, preset.model, with_aux=False)
    res = segmentor_flops(model, shape)
    params = segmentor_param_counts(model)["total"]
    attn = res["attention_flops"]
    out = {"preset": preset.name, "shape": list(shape), "params": params, "gflops": res["flops"] / 1e9,
           "gmacs": res["flops"] / 2e9, "attention_gflops": attn / 1e9,
           "by_op_gflops": {k: v / 1e9 for k, v in res["by_op"].items()}}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{preset.name} at {shape[0]}x{shape[1]} (inference: backbone + decode head)")
    print(f"  params: {params / 1e6:.2f}M")
    print(f"  FLOPs:  {out['gflops']:.1f} G  ({out['gmacs']:.1f} GMACs; the original tool printed MACs as FLOPs)")
    print(f"  of which attention matmuls: {out['attention_gflops']:.1f} G (missed by the original counter)")
    for k, v in out["by_op_gflops"].items():
        print(f"    {k:<40} {v:10.1f} G")
    return 0


# --------------------------------------------------------------------------- predict
def cmd_predict(args: argparse.Namespace) -> int:
    from .inference import Segmenter, find_images

    from .outputs import ensure_writable_dir

    find_images(args.inputs)  # fail on a bad input before loading a large model
    ensure_writable_dir(args.out, "--out")
    from .batch_predict import format_summary, local_device, predict_files

    seg = Segmenter.from_preset(args.preset, args.checkpoint, overrides=args.set, device=local_device(args.device),
                                mode=args.mode, aug=True if args.aug else None, window_batch=args.window_batch,
                                precision=args.precision, compile=args.compile, flip_directions=args.flip_directions)
    seg.progress = not args.no_progress  # a bar over the windows of very large images
    if args.checkpoint is None:
        print("warning: no --checkpoint given: predicting with random weights", file=sys.stderr)
    summary = predict_files(seg, args.inputs, args.out, batch_size=args.batch_size, workers=args.workers,
                            progress=not args.no_progress, write_summary=True)
    if summary["rank"] == 0:  # torchrun: every process predicts its shard, rank 0 reports
        print(format_summary(summary, args.out) + f" (mode={seg.mode}, aug={'ms+flip' if seg.aug else 'off'}, "
              f"device={seg.device}, precision={seg.precision})")
    return 1 if summary.get("failed") else 0  # the rest is written; the exit status says not everything was


# --------------------------------------------------------------------------- train / test / evaluate / demo
def resolve_preset(args: argparse.Namespace):
    """The preset with --iters / --batch-size / --set applied."""
    from .overrides import apply_overrides
    from .presets import get_preset

    preset = get_preset(args.preset)
    sets = list(getattr(args, "set", None) or [])
    if getattr(args, "iters", None):
        sets.append(f"train.iters={args.iters}")
    if getattr(args, "batch_size", None):
        sets.append(f"train.batch_size={args.batch_size}")
    apply_overrides(preset, sets)
    names = preset.model.class_names
    if names and len(names) != preset.model.num_classes and not any(s.startswith("model.class_names=") for s in sets):
        preset.model.class_names = None  # the preset's names, for another class count: the data's names or class_i
    if getattr(args, "iters", None) and preset.train.eval_interval > preset.train.iters:
        preset.train.eval_interval = preset.train.iters
    return preset


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .config import validate_model_config
    from .data.check import check_dataset
    from .data.datasets import build_dataset
    from .engine.trainer import train
    from .outputs import ensure_writable_dir

    preset = resolve_preset(args)
    validate_model_config(preset.model)
    from .engine.loop import default_work_dir

    resume = True if args.resume == "latest" else args.resume
    work_dir = Path(args.work_dir) if args.work_dir else default_work_dir(preset.name, resume)
    ensure_writable_dir(work_dir, "--work-dir")
    # every image and label map readable, sizes matching, labels in range: checked once (cached), before any work
    check_dataset(build_dataset(preset.data.dataset, args.data_root, "train", preset.model.num_classes), work_dir,
                  progress=not args.no_progress and int(__import__("os").environ.get("RANK", "0")) == 0)
    result = train(preset, args.data_root, work_dir, resume=resume, load_from=args.load_from,
                   pretrained=args.pretrained, amp=args.amp, device=args.device, seed=args.seed,
                   progress=not args.no_progress, validate=not args.no_validate,
                   overwrite=getattr(args, "overwrite", False))
    msg = f"trained {preset.name} to iteration {result.iterations}; checkpoints and logs in {work_dir}"
    if result.metrics:
        msg += f"; mIoU {result.metrics['mIoU']:.4f}"
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        print(msg)
    return 0


LISTED_DATASETS = ("cityscapes", "ade20k", "pascal_context", "folder")


def _load_for_test(args, preset):
    from .checkpoints import config_for, load_model
    from .inference import Segmenter

    from .overrides import apply_model_overrides

    cfg = config_for(args.checkpoint, preset.model)
    if cfg is not preset.model:  # one of ours: its stored config, with this command's model.* --set on top
        cfg = apply_model_overrides(cfg, [a for a in args.set if a.strip().startswith("model.")])
    model, cfg = load_model(args.checkpoint, cfg)
    seg = Segmenter(model, cfg, device=_device(args.device), mode=args.mode, aug=True if args.aug else None,
                    window_batch=args.window_batch, precision=args.precision, flip_directions=args.flip_directions)
    print(f"testing with mode={seg.mode}, aug={'ms+flip' if seg.aug else 'off'}, device={seg.device}, "
          f"precision={seg.precision}")
    return seg


def cmd_test(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .data.datasets import build_dataset
    from .evaluation.evaluate import evaluate
    from .evaluation.formats import SubmissionWriter
    from .evaluation.metrics import format_table, to_json

    from .outputs import atomic_write_text, ensure_writable_dir, ensure_writable_file

    preset = resolve_preset(args)
    if args.format_only and not args.out:
        raise SetrError("--format-only needs --out DIR for the prediction files")
    json_path = Path(args.json or Path(args.checkpoint).with_name(f"{Path(args.checkpoint).stem}_{args.split}_metrics.json"))
    for option, folder in (("--out", args.out), ("--show-dir", args.show_dir)):
        if folder:
            ensure_writable_dir(folder, option)
    if not args.format_only:
        ensure_writable_file(json_path, "--json" if args.json else "--json (default: next to the checkpoint)")
    seg = _load_for_test(args, preset)
    # the dataset the checkpoint was trained on (stored with it) unless --set data.dataset says otherwise
    name = preset.data.dataset
    if seg.cfg.dataset in LISTED_DATASETS and not any(s.startswith("data.dataset=") for s in args.set):
        name = seg.cfg.dataset
    dataset = build_dataset(name, args.data_root, args.split, seg.cfg.num_classes,
                            require_masks=not args.format_only)
    writer = SubmissionWriter(name, args.out) if args.out else None
    metrics = evaluate(seg, dataset, progress=not args.no_progress, show_dir=args.show_dir, formatter=writer)
    if writer is not None:
        print(f"wrote {len(writer.written)} prediction files to {args.out}")
    if args.format_only or not metrics:
        return 0
    metrics.update({"preset": preset.name, "checkpoint": str(args.checkpoint), "split": args.split,
                    "mode": seg.mode, "aug": seg.aug, "precision": seg.precision, "num_images": len(dataset)})
    print(format_table(metrics))  # the numbers first: a failing write below cannot take them away
    atomic_write_text(json_path, to_json(metrics))
    print(f"metrics written to {json_path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import evaluate_folders
    from .evaluation.metrics import format_table, to_json

    from .data.classes import class_names_from

    names = class_names_from(args.classes, args.num_classes) if args.classes else None
    metrics = evaluate_folders(args.pred_dir, args.gt_dir, args.num_classes, args.reduce_zero_label,
                               args.ignore_index, class_names=names, ignore_out_of_range=args.ignore_out_of_range)
    print(to_json(metrics) if args.json else format_table(metrics))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    metrics = run_demo(args.work_dir, iters=args.iters, progress=not args.no_progress)
    print(f"demo mIoU {metrics['mIoU']:.4f} (aAcc {metrics['aAcc']:.4f}, precision {metrics['precision']}); "
          f"results in {args.work_dir}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .benchmark import benchmark, format_result

    preset = resolve_preset(args)
    shape = tuple(args.shape) * (2 if args.shape and len(args.shape) == 1 else 1) if args.shape else None
    r = benchmark(preset, shape, args.batch, args.precision, args.compile, args.train, args.mode,
                  _device(args.device), runs=args.runs, window_batch=args.window_batch)
    print(json.dumps(r, indent=2) if args.json else format_result(r))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .checkpoints import load_model, read_config
    from .config import build_model
    from .export import check_onnx, export_onnx

    from .outputs import ensure_writable_file

    from .config import validate_model_config

    preset = resolve_preset(args)
    validate_model_config(preset.model)
    ensure_writable_file(args.onnx, "--onnx")
    if args.checkpoint:
        stored = read_config(args.checkpoint)
        model, cfg = load_model(args.checkpoint, stored if stored is not None and not args.set else preset.model)
    else:
        print("warning: no --checkpoint given: exporting random weights", file=sys.stderr)
        cfg = preset.model
        model = build_model(cfg, with_aux=False)
    shape = tuple(args.shape) * (2 if len(args.shape) == 1 else 1) if args.shape else tuple(cfg.backbone.img_size)
    path = export_onnx(model, args.onnx, shape, dynamic=args.dynamic)
    msg = f"wrote {path} (input 'img' (B, 3, {shape[0]}, {shape[1]}) normalised, output 'logits')"
    if args.verify:
        msg += f"; onnxruntime vs PyTorch max abs diff {check_onnx(model, path, shape):.2e}"
    print(msg)
    return 0


def cmd_classify_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .engine.classification import train_classifier
    from .overrides import apply_overrides
    from .presets import get_classifier_preset

    p = get_classifier_preset(args.preset)
    recipe = p.recipe
    sets = list(args.set)
    if args.epochs:
        sets.append(f"epochs={args.epochs}")
    if args.batch_size:
        sets.append(f"batch_size={args.batch_size}")
    apply_overrides(recipe, sets)
    from .engine.loop import default_work_dir
    from .outputs import ensure_writable_dir

    resume = True if args.resume == "latest" else args.resume
    work_dir = Path(args.work_dir) if args.work_dir else default_work_dir(p.name, resume)
    ensure_writable_dir(work_dir, "--work-dir")
    result = train_classifier(p.name, args.data_root, work_dir, recipe, resume=resume, amp=args.amp,
                              device=args.device, seed=args.seed, progress=not args.no_progress,
                              overwrite=getattr(args, "overwrite", False))
    if result:
        top1 = result.get("top1")
        print(f"trained {p.name} for {recipe.epochs} epochs in {work_dir}"
              + (f"; top-1 {top1:.2f}% (best {result['best']['top1']:.2f}%)" if top1 is not None else ""))
    return 0


def cmd_classify_test(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from .engine.classification import ClassifyRecipe, build_image_folder, eval_transform, evaluate_classifier
    from .engine.distributed import DistInfo
    from .models.classifier import load_hlg_checkpoint
    from .presets import get_classifier_preset

    from .outputs import ensure_writable_file

    p = get_classifier_preset(args.preset)
    state_path = Path(args.checkpoint)
    # the EMA's numbers go to their own file: a plain test and an --ema test of one checkpoint keep both
    suffix = "_ema" if args.ema else ""
    out = Path(args.json or state_path.with_name(f"{state_path.stem}_{args.split}_top1{suffix}.json"))
    ensure_writable_file(out, "--json" if args.json else "--json (default: next to the checkpoint)")
    if args.ema:
        from .engine.checkpoint import read_checkpoint

        state = read_checkpoint(state_path)
        if "ema" not in state:
            raise SetrError(f"{state_path}: no EMA weights in this checkpoint")
        tmp = state_path.with_name(f".{state_path.stem}_ema.pth")
        torch.save({"model": state["ema"]}, tmp)
        state_path = tmp
    try:
        model, arch = load_hlg_checkpoint(state_path, p.variant)
    finally:
        if args.ema:
            state_path.unlink(missing_ok=True)
    for note in arch["notes"]:
        print(f"note: {note}")
    recipe = ClassifyRecipe(img_size=args.img_size)
    dataset = build_image_folder(Path(args.data_root) / args.split, eval_transform(recipe))
    if len(dataset.classes) != model.num_classes:
        raise SetrError(f"{args.checkpoint}: checkpoint has {model.num_classes} classes, "
                        f"{Path(args.data_root) / args.split} has {len(dataset.classes)}")
    info = DistInfo(device=torch.device(_device(args.device)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    metrics = evaluate_classifier(model.to(info.device), loader, info)
    metrics.update({"preset": p.name, "checkpoint": str(args.checkpoint), "split": args.split, "ema": args.ema})
    from .outputs import atomic_write_text

    atomic_write_text(out, json.dumps(metrics, indent=2))
    print(f"top-1 {metrics['top1']:.2f}%  top-5 {metrics['top5']:.2f}%  on {metrics['images']} images; {out}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .data.convert import convert_cityscapes, convert_pascal_context

    if args.dataset == "cityscapes":
        if args.out_dir:
            from .outputs import ensure_writable_dir

            ensure_writable_dir(args.out_dir, "--out-dir")
        written = convert_cityscapes(args.root, args.gt_dir, args.out_dir, args.nproc)
    else:
        if not args.context_dir:
            raise SetrError("pascal_context needs --context-dir (the PASCAL-Context release: trainval/, labels.txt)")
        written = convert_pascal_context(args.root, args.context_dir, args.train_list, args.val_list)
    print(f"wrote {len(written)} label maps")
    return 0


def cmd_convert_weights(args: argparse.Namespace) -> int:
    from .pretrained import convert_weights

    names = None
    if args.class_names:
        from pathlib import Path

        names = [ln.strip() for ln in Path(args.class_names).read_text().splitlines() if ln.strip()]
    size = tuple(args.verify_size) * (2 if args.verify_size and len(args.verify_size) == 1 else 1) \
        if args.verify_size else None
    result = convert_weights(args.source, args.out, preset=args.preset, class_names=names, verify_size=size,
                             trust_checkpoint=args.trust_checkpoint, ema=args.ema)
    print(result.summary())
    if result.max_abs_diff > 0:
        raise SetrError(f"{result.folder}: the reloaded model's outputs differ from the checkpoint's "
                        f"(max abs difference {result.max_abs_diff:.3g})")
    return 0


# --------------------------------------------------------------------------- parser
class _OneLineParser(argparse.ArgumentParser):
    """A bad option is one line (what is wrong, and where the usage is), not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="setr", description="SETR semantic segmentation: presets, inference, tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    from .detection.cli import add_detect_parser

    add_detect_parser(sub)

    p = sub.add_parser("presets", help="list the named presets (the original results tables)")
    p.add_argument("--dataset", choices=("cityscapes", "ade20k", "pascal_context", "folder"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("info", help="parameter counts and settings of a preset (computed on the meta device)")
    p.add_argument("preset")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("flops", help="parameters and FLOPs of one forward, attention matmuls included")
    p.add_argument("preset")
    argtypes.add_shape(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("predict", help="segment images or folders: <stem>.png label maps and <stem>_overlay.jpg")
    p.add_argument("preset")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--checkpoint", "-c", help="our .safetensors checkpoint or an original SETR .pth")
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.add_argument("--mode", choices=("whole", "slide"), help="default: the preset's (slide)")
    p.add_argument("--aug", action="store_true", help="multi-scale + flip test")
    _add_flip_directions(p)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override preset values (model.*; e.g. model.test.img_scale=[1024,512])")
    _add_speed_options(p)
    p.add_argument("--compile", action="store_true", help="torch.compile the network (slow first image)")
    p.add_argument("--batch-size", type=argtypes.positive_int, default=1,
                   help="images per forward pass (consecutive images of equal size; default 1)")
    p.add_argument("--workers", type=argtypes.nonneg_int, default=2,
                   help="image-decoding worker processes per process (default 2; 0 decodes in the main process)")
    p.add_argument("--no-progress", action="store_true")
    _add_device(p)
    _add_trust(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("train", help="train a preset (one process, or N with torchrun)")
    p.add_argument("preset")
    p.add_argument("--data-root", required=True, help="dataset folder in the preset's layout")
    p.add_argument("--work-dir", help="checkpoints and logs (default: work_dirs/<preset>)")
    p.add_argument("--iters", type=argtypes.positive_int, help="total iterations (default: the preset's)")
    p.add_argument("--batch-size", type=argtypes.positive_int, help="global batch size (default: the preset's)")
    p.add_argument("--amp", choices=("bf16", "fp16"), help="mixed precision")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CKPT",
                   help="continue from CKPT, or from the latest iter_*.pth in the work dir (none yet: from 0)")
    _add_overwrite(p)
    p.add_argument("--load-from", help="start from these weights (a checkpoint), at iteration 0")
    p.add_argument("--pretrained", help="ImageNet ViT/DeiT weights for the backbone: a .pth/.npz/.safetensors "
                                        "file or a timm model name")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override preset values")
    p.add_argument("--seed", type=argtypes.nonneg_int, default=0)
    p.add_argument("--no-validate", action="store_true", help="no evaluation during training")
    p.add_argument("--no-progress", action="store_true")
    _add_device(p)
    _add_trust(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("test", help="evaluate a checkpoint on a dataset split (mIoU, mAcc, aAcc, per class)")
    p.add_argument("preset")
    p.add_argument("checkpoint")
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--mode", choices=("whole", "slide"))
    p.add_argument("--aug", action="store_true", help="multi-scale + flip test")
    _add_flip_directions(p)
    p.add_argument("--format-only", action="store_true", help="only write prediction files (needs --out)")
    p.add_argument("--out", help="write prediction files in the evaluation server's format here")
    p.add_argument("--show-dir", help="write overlays here")
    p.add_argument("--json", help="metrics JSON path (default: next to the checkpoint)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE")
    _add_speed_options(p)
    p.add_argument("--no-progress", action="store_true")
    _add_device(p)
    _add_trust(p)
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("evaluate", help="score a folder of prediction PNGs against ground truth")
    p.add_argument("pred_dir")
    p.add_argument("gt_dir")
    p.add_argument("--num-classes", type=argtypes.positive_int, required=True)
    p.add_argument("--reduce-zero-label", action="store_true", help="ADE20K: 0 is ignored, v -> v - 1")
    p.add_argument("--ignore-index", type=argtypes.label_value, default=255)
    p.add_argument("--classes", metavar="FILE|DATASET",
                   help="class names: a file with one name per line (or a folder with classes.txt), or cityscapes, "
                        "ade20k, pascal_context")
    p.add_argument("--ignore-out-of-range", action="store_true",
                   help="leave label values outside --num-classes out of every class instead of refusing them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("benchmark", help="latency, images/s, peak memory and TFLOP/s of a forward or training step")
    p.add_argument("preset")
    argtypes.add_shape(p)
    p.add_argument("--batch", type=argtypes.positive_int, default=1)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16", "int8"),
                   help="auto (the default path): bf16 autocast where the hardware has bf16 matrix units, else "
                        "fp32; int8: CPU inference with dynamic int8 encoder linear layers")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--train", action="store_true", help="time a training step (aux heads, SGD) instead")
    p.add_argument("--mode", default="whole", choices=("whole", "slide"))
    p.add_argument("--window-batch", type=_positive_int, default=None)
    p.add_argument("--runs", type=argtypes.positive_int, default=5)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true")
    _add_device(p)
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("export", help="export whole-mode logits to ONNX")
    p.add_argument("preset")
    p.add_argument("--checkpoint", "-c")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    argtypes.add_shape(p)
    p.add_argument("--dynamic", action="store_true", help="free batch dimension")
    p.add_argument("--verify", action="store_true", help="compare onnxruntime with PyTorch on a random input")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE")
    _add_trust(p)
    p.set_defaults(func=cmd_export)

    cls = sub.add_parser("classify", help="ImageNet-style classification with the HLG models")
    csub = cls.add_subparsers(dest="classify_command", required=True)
    p = csub.add_parser("train", help="train an HLG classifier on <root>/train/<class>/*")
    p.add_argument("preset", help="hlg_tiny, hlg_small, hlg_medium or hlg_large")
    p.add_argument("--data-root", required=True)
    p.add_argument("--work-dir")
    p.add_argument("--epochs", type=argtypes.positive_int)
    p.add_argument("--batch-size", type=argtypes.positive_int, help="global batch (lr scales as 5e-4 x batch / 512)")
    p.add_argument("--amp", choices=("bf16", "fp16"))
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CKPT")
    _add_overwrite(p)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="recipe overrides, e.g. mixup=0")
    p.add_argument("--seed", type=argtypes.nonneg_int, default=0)
    p.add_argument("--no-progress", action="store_true")
    _add_device(p)
    _add_trust(p)
    p.set_defaults(func=cmd_classify_train)
    p = csub.add_parser("test", help="top-1 / top-5 of a checkpoint on <root>/<split>/<class>/*")
    p.add_argument("preset")
    p.add_argument("checkpoint", help="ours (epoch_N.pth) or the authors' released .pth")
    p.add_argument("--data-root", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--ema", action="store_true", help="evaluate the EMA weights of one of our checkpoints")
    p.add_argument("--img-size", type=argtypes.positive_int, default=224)
    p.add_argument("--batch-size", type=argtypes.positive_int, default=64)
    p.add_argument("--workers", type=argtypes.nonneg_int, default=4)
    p.add_argument("--json")
    _add_device(p)
    _add_trust(p)
    p.set_defaults(func=cmd_classify_test)

    p = sub.add_parser("convert", help="make training labels: Cityscapes polygons, Pascal Context masks")
    p.add_argument("dataset", choices=("cityscapes", "pascal_context"))
    p.add_argument("root", help="cityscapes/ (with gtFine/) or VOCdevkit/")
    p.add_argument("--gt-dir", default="gtFine")
    p.add_argument("--out-dir", help="where train.txt / val.txt go (Cityscapes; default: root)")
    p.add_argument("--nproc", type=argtypes.positive_int, default=1)
    p.add_argument("--context-dir", help="Pascal Context: the release folder with trainval/*.mat and labels.txt")
    p.add_argument("--train-list")
    p.add_argument("--val-list")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("convert-weights", help="a checkpoint -> a pretrained folder (config.json, model.safetensors, "
                                               "README.md) for from_pretrained / the Hugging Face Hub")
    p.add_argument("source", help="an original SETR .pth (with --preset), an HLG ImageNet .pth, or one of our "
                                  "checkpoints (.safetensors, iter_N.pth, epoch_N.pth)")
    p.add_argument("--out", "-o", required=True, help="the pretrained folder to write")
    p.add_argument("--preset", help="the preset the weights belong to (required for original SETR checkpoints)")
    p.add_argument("--class-names", help="HLG classifiers: a text file with one class name per line")
    p.add_argument("--ema", action="store_true", help="our classification checkpoints: convert the EMA weights")
    p.add_argument("--verify-size", type=argtypes.positive_int, nargs="+", metavar=("H", "W"),
                   help="size of the random input the reloaded model is checked on (default: 256, 224 for HLG)")
    _add_trust(p)
    p.set_defaults(func=cmd_convert_weights)

    p = sub.add_parser("demo", help="train and evaluate a small SETR on generated data (CPU, minutes)")
    p.add_argument("--work-dir", default="work_dirs/demo")
    p.add_argument("--iters", type=argtypes.positive_int)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def _one_line(exc: Exception) -> str:
    """The message; for an error re-raised from a data-loader worker, the original message only."""
    msg = str(exc)
    if "Original Traceback" in msg:
        last = [ln for ln in msg.splitlines() if ln.strip()][-1]
        msg = last.split("SetrError: ", 1)[-1]
    return msg


def _trust_scope(args: argparse.Namespace):
    """--trust-checkpoint: every weights file the command reads may unpickle Python objects (unsafe)."""
    if not getattr(args, "trust_checkpoint", False):
        import contextlib

        return contextlib.nullcontext()
    from .checkpoints import trusted_checkpoints

    return trusted_checkpoints(True)


def _os_error_line(exc: OSError) -> str:
    import errno

    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [p for p in (exc.filename, exc.filename2) if p]
    where = " -> ".join(str(p) for p in paths)
    hint = {errno.ENOSPC: " (free some space or write elsewhere)", errno.EACCES: " (check the permissions)",
            errno.EROFS: " (a read-only file system: write elsewhere)"}.get(exc.errno, "")
    return f"{where}: {reason}{hint}" if where else f"{reason}{hint}"


class _StderrLogHandler(logging.Handler):
    """The library logs through ``logging``; the command line shows its warnings as one line each on stderr
    (looked up at each message, so redirected streams are honoured)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"{record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)


def _show_library_warnings() -> None:
    log = logging.getLogger("setr")
    if not any(isinstance(h, _StderrLogHandler) for h in log.handlers):
        handler = _StderrLogHandler(level=logging.WARNING)
        log.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _show_library_warnings()
    try:
        with _trust_scope(args):
            return int(args.func(args) or 0)
    except SetrError as exc:
        print(f"setr {args.command}: error: {_one_line(exc)}", file=sys.stderr)  # one line, no traceback
        return 1
    except ImportError as exc:  # an optional extra not installed: name it, in one line
        from .extras import missing_extra

        msg = missing_extra(exc)
        if msg is None:
            raise
        print(f"setr {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        if getattr(exc, "checkpointed", False):  # training stopped on SIGINT / SIGTERM: saved, resume hint printed
            return 0
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `setr presets | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # permissions, not-a-directory, disk full, ...: the path and the reason, one line
        print(f"setr {args.command}: error: {_os_error_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

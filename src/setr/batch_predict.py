"""Prediction over many images, on one process or many (``torchrun --nproc_per_node N -m setr predict ...``).

* The input list (``find_images``: files and folders in the order given, each folder's images sorted; less the
  output folder and the files an earlier run recorded as its outputs, see :mod:`setr.io.paths`) is cut into
  contiguous shards, one per process (``RANK`` / ``WORLD_SIZE`` from torchrun); every process writes the outputs
  of its own shard, named as one process names them (:func:`output_stems`: ``<name>.png`` label map,
  ``<name>_overlay.jpg``), so N processes write exactly the files one process writes: none twice, none missing.
  An output folder equal to an input folder, or an output that would replace an input file, is refused before
  any work.
* Each process predicts its images smallest first (the names do not change), so one huge image does not hold
  back the rest; images much larger than the preset's test scale are announced before any work with an
  estimate of their time (from one timed image at the test scale); ``max_size`` shrinks images whose longer
  side exceeds it before the network (the label map is resized back to the image's size, nearest neighbour).
  Every image's outputs are written as soon as it is done.
* A ``DataLoader`` decodes the images in worker processes (``workers``), so the model does not wait on decoding;
  ``batch_size`` > 1 runs consecutive images of equal size through the network together (images of other sizes
  go in smaller batches).
* The run ends with a summary, printed and written to ``OUT/predict_summary.json`` by rank 0:
  ``{"images": N, "per_rank": [n0, n1, ...], "seconds": s, "images_per_s": N / s, ...,
  "outputs": {input path: [label map, overlay]}}`` (output names relative to ``OUT``).

On GPUs each process uses ``cuda:LOCAL_RANK`` and the process group NCCL; on CPUs gloo. Several machines: the
same command under torchrun's multi-node rendezvous (``--nnodes``, ``--rdzv-endpoint``), with the inputs and the
output folder on a shared file system.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from .errors import SetrError

from .io.images import find_images, read_image

SUMMARY_NAME = "predict_summary.json"
logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------- naming
def _name_at(path: Path, level: int) -> str:
    """Level 0: ``stem``; 1: ``stem_ext``; 2: ``parent_stem``; 3: ``parent_stem_ext``; then more folders."""
    ext = path.suffix.lstrip(".").lower()
    folders = list(path.parent.parts[::-1])[: max(0, (level - 2) // 2 + 1)] if level >= 2 else []
    parts = [*reversed([f for f in folders if f not in ("/", "")]), path.stem]
    if level % 2 == 1 and ext:
        parts.append(ext)
    return "_".join(parts)


def output_stems(paths: Sequence[Path]) -> list[str]:
    """The output name of every input (``<name>.png``, ``<name>_overlay.jpg``), the same on every rank and
    independent of the inputs' order: the file's stem where no other input has it; where several do (or a
    longer name equals another input's), each of them gets the first unique one of ``<stem>_<ext>``
    (``twin.jpg`` -> ``twin_jpg``, ``twin.png`` -> ``twin_png``), ``<folder>_<stem>``,
    ``<folder>_<stem>_<ext>``, then more parent folders. The same file given twice is one name plus ``_2``..."""
    unique = list(dict.fromkeys(Path(p) for p in paths))
    levels = [0] * len(unique)
    depth = max((len(p.parts) for p in unique), default=0) * 2 + 2
    while True:
        names = [_name_at(p, lv) for p, lv in zip(unique, levels)]
        groups: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            groups.setdefault(n, []).append(i)
        clashes = [ix for ix in groups.values() if len(ix) > 1 and any(levels[i] < depth for i in ix)]
        if not clashes:
            break
        for ix in clashes:
            for i in ix:
                levels[i] += 1
    named = dict(zip(unique, names))
    out, seen = [], {}
    for p in paths:  # the very same file given twice: its name, then _2, _3, ...
        n = named[Path(p)]
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


def shard(n: int, rank: int, world_size: int) -> range:
    """Contiguous share of ``range(n)`` for ``rank``: sizes differ by at most one, earlier ranks larger."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


# --------------------------------------------------------------------------------------------------- data
class ImageFiles(torch.utils.data.Dataset):
    """(index, (H, W, 3) uint8 RGB, original (H, W)) for each path, decoded in the DataLoader's workers; with
    ``max_size`` an image whose longer side is larger is shrunk to it (OpenCV INTER_AREA, aspect kept)."""

    def __init__(self, paths: Sequence[Path], indices: Iterable[int], max_size: int | None = None):
        self.paths = list(paths)
        self.indices = list(indices)
        self.max_size = max_size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | str, tuple[int, int] | None]:
        """(index, image, original size), or (index, the one-line reason, None) for a file that cannot be read:
        the run goes on."""
        index = self.indices[i]
        try:
            image = read_image(self.paths[index])
        except SetrError as exc:
            return index, str(exc), None
        h, w = image.shape[:2]
        if self.max_size and max(h, w) > self.max_size:
            import cv2

            f = self.max_size / max(h, w)
            image = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        return index, image, (h, w)


def _keep_list(batch: list) -> list:
    return batch  # images of different sizes cannot be stacked; batching happens in segment_batch


# --------------------------------------------------------------------------------------------------- compute
def segment_batch(seg, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Label maps of images of one size, run through the network together (the Segmenter's own test pipeline:
    its views, resizing, normalisation, inference mode and precision)."""
    return seg.predict_batch(images)  # labels only: no probability map kept (issue 21)


def _same_size_runs(items: list[tuple]) -> list[list[tuple]]:
    runs: list[list[tuple]] = []
    for item in items:
        if runs and runs[-1][0][1].shape == item[1].shape:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def output_names(stem: str) -> list[str]:
    """The files written for one input: label map, overlay."""
    return [f"{stem}.png", f"{stem}_overlay.jpg"]


def write_outputs(seg, image: np.ndarray, labels: np.ndarray, out: Path, stem: str) -> Path:
    """``out/<stem>.png`` (class ids) and ``out/<stem>_overlay.jpg`` (palette blended over the image)."""
    from PIL import Image

    mask_path = out / f"{stem}.png"
    Image.fromarray(labels).save(mask_path)
    Image.fromarray(seg.overlay(image, labels)).save(out / f"{stem}_overlay.jpg", quality=92)
    return mask_path


# --------------------------------------------------------------------------------------------------- processes
def local_device(name: str | None) -> str:
    """The device for this process: ``cuda:LOCAL_RANK`` under torchrun when CUDA is wanted without an index."""
    from .dist import resolve_device

    device = resolve_device(name)
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def _world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def image_sizes(paths: Sequence[Path]) -> list[tuple[int, int] | None]:
    """(H, W) of each file from its header (Pillow opens lazily: no decoding); None where Pillow cannot tell."""
    from PIL import Image

    sizes: list[tuple[int, int] | None] = []
    for p in paths:
        try:
            with Image.open(p) as im:
                sizes.append((im.size[1], im.size[0]))
        except Exception:  # noqa: BLE001 - read (and reported) by the workers later
            sizes.append(None)
    return sizes


def fitted(hw: tuple[int, int], max_size: int | None) -> tuple[int, int]:
    """(H, W) after ``max_size`` (the longer side at most ``max_size``, aspect kept)."""
    h, w = hw
    if max_size and max(h, w) > max_size:
        f = max_size / max(h, w)
        return max(1, round(h * f)), max(1, round(w * f))
    return h, w


def view_pixels(seg, hw: tuple[int, int]) -> int:
    """Pixels the network sees for an (H, W) image: every test view together."""
    return sum(v.size[0] * v.size[1] for v in seg.views(hw))


def announce_large(seg, paths: Sequence[Path], sizes: Sequence[tuple[int, int] | None], indices: Sequence[int],
                   max_size: int | None) -> list[int]:
    """Warn, before any work, about the images much larger than the preset's test scale, with an estimate of
    their time from one image at the test scale timed here; returns their indices."""
    from .inference import LARGE_IMAGE_FACTOR

    t = seg.cfg.test
    ref_hw = (t.img_scale[1], t.img_scale[0]) if t.img_scale else (2 * t.crop_size[0], 2 * t.crop_size[1])
    ref = view_pixels(seg, ref_hw)
    large = [i for i in indices if sizes[i] and view_pixels(seg, fitted(sizes[i], max_size)) > LARGE_IMAGE_FACTOR * ref]
    if not large:
        return []
    probe = np.zeros((*ref_hw, 3), np.uint8)
    seg.segment(probe)  # the first call pays for the warm-up
    t0 = time.perf_counter()
    seg.segment(probe)
    per_ref = time.perf_counter() - t0
    biggest = max(large, key=lambda i: sizes[i][0] * sizes[i][1])
    h, w = sizes[biggest]
    seconds = sum(per_ref * view_pixels(seg, fitted(sizes[i], max_size)) / ref for i in large)
    more = " (more in whole mode: attention grows with the square of the pixels)" if seg.mode == "whole" else ""
    logger.warning(f"{len(large)} image(s) much larger than this preset's test scale (largest {paths[biggest]}, "
                   f"{w}x{h}): at least ~{seconds:.0f} s together{more}, from {per_ref:.2f} s measured for one "
                   f"{ref_hw[1]}x{ref_hw[0]} image; they are predicted last; --max-size N shrinks images to N pixels "
                   f"on the longer side (or --set model.test.img_scale=[L,S])")
    return large


def collect_inputs(inputs: Iterable[str | os.PathLike], out: Path, announce: bool = True,
                   names: Callable[[str], list[str]] = output_names) -> tuple[list[Path], list[str]]:
    """The images to predict (see the module doc) and the output names; refuses, before any work, outputs that
    would replace an input. Returns the paths and their output stems (``announce``: log what is left out;
    ``names``: the files written for one output stem, ``setr detect predict`` writes other ones)."""
    from .io.paths import check_not_weights, check_outputs_apart, drop_written

    inputs = list(inputs)
    check_not_weights(inputs)
    found = find_images(inputs)
    note = check_outputs_apart(out, [i for i in inputs if Path(i).is_dir()])
    paths, dropped = drop_written(found, inputs, out, SUMMARY_NAME)
    if not paths:
        raise SetrError(f"no images left to predict: all {len(found)} found are outputs of an earlier run "
                        f"(inside --out {out} or listed in a {SUMMARY_NAME})")
    stems = output_stems(paths)
    check_outputs_apart(out, [p for p in paths if Path(p).is_file()],
                        outputs=[out / n for s in stems for n in names(s)])
    if note and announce:
        logger.warning(note)
    if dropped and announce:
        logger.warning(f"left out {dropped} file(s) written by an earlier run (inside --out {out} or listed in "
                       f"its {SUMMARY_NAME})")
    return paths, stems


def predict_files(seg, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *, batch_size: int = 1,
                  workers: int = 2, progress: bool = True, distributed: bool | None = None,
                  write_summary: bool = False, max_size: int | None = None,
                  collected: tuple[list[Path], list[str]] | None = None) -> dict[str, Any]:
    """Predict every input image with ``seg`` (a :class:`~setr.inference.Segmenter`) and write its outputs.

    ``distributed`` (default: when ``WORLD_SIZE`` > 1) shards the list over the torchrun processes (the process
    group is started here if needed: NCCL for CUDA, gloo otherwise). Returns the summary, with ``written`` (this
    process's label-map paths, in input order; they are written smallest image first) and ``rank`` added;
    ``write_summary`` writes it (rank 0) to ``out_dir/predict_summary.json``. ``max_size``: see the module doc.
    ``collected``: what :func:`collect_inputs` returned for these inputs and ``out_dir`` (the inputs are then not
    walked again)."""
    import torch.distributed as dist
    from tqdm import tqdm

    if batch_size < 1 or workers < 0:
        raise SetrError(f"batch size must be >= 1 and workers >= 0 (got {batch_size}, {workers})")
    if max_size is not None and max_size < 1:
        raise SetrError(f"--max-size must be >= 1 (got {max_size})")
    rank, world = _world()
    if distributed is None:
        distributed = world > 1
    if not distributed:
        rank, world = 0, 1
    started_group = False
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if seg.device.type == "cuda" else "gloo")
        started_group = True
    try:
        out = Path(out_dir)
        paths, stems = collected if collected is not None else collect_inputs(inputs, out)
        sizes = image_sizes(paths)
        mine = list(shard(len(paths), rank, world))
        # smallest first (equal sizes together, so batches fill): one huge image does not hold back the rest
        mine.sort(key=lambda i: (view_pixels(seg, fitted(sizes[i], max_size)) if sizes[i] else 0, sizes[i] or (0, 0), i))
        announce_large(seg, paths, sizes, mine, max_size)
        out.mkdir(parents=True, exist_ok=True)
        loader = torch.utils.data.DataLoader(ImageFiles(paths, mine, max_size), batch_size=batch_size,
                                             shuffle=False, num_workers=workers, collate_fn=_keep_list,
                                             pin_memory=seg.device.type == "cuda")
        if distributed:
            dist.barrier()
        t0 = time.perf_counter()
        written: dict[int, Path] = {}
        bar = tqdm(total=len(mine), desc=f"predict[{rank}]" if distributed else "predict", unit="img",
                   disable=not progress or rank != 0)
        failed: list[dict[str, str]] = []
        for batch in loader:
            for index, error, _ in [b for b in batch if isinstance(b[1], str)]:
                logger.warning(f"skipped: {error}")
                failed.append({"path": str(paths[index]), "error": error})
                bar.update(1)
            for run in _same_size_runs([b for b in batch if not isinstance(b[1], str)]):
                labels = segment_batch(seg, [im for _, im, _ in run])
                for (index, image, ori_hw), lab in zip(run, labels):
                    if image.shape[:2] != ori_hw:  # shrunk by max_size: the outputs at the file's own size
                        import cv2

                        lab = cv2.resize(lab, ori_hw[::-1], interpolation=cv2.INTER_NEAREST)
                        image = read_image(paths[index])
                    written[index] = write_outputs(seg, image, lab, out, stems[index])
                bar.update(len(run))
        bar.close()
        local_seconds = time.perf_counter() - t0
        per_rank, seconds = [len(written)], local_seconds
        if distributed:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, (len(written), local_seconds, failed))
            per_rank = [int(n) for n, _, _ in gathered]
            seconds = max(float(s) for _, s, _ in gathered)
            failed = [f for _, _, fs in gathered for f in fs]
        bad = {f["path"] for f in failed}
        summary = {"images": int(sum(per_rank)), "per_rank": per_rank, "seconds": round(seconds, 3),
                   "images_per_s": round(sum(per_rank) / seconds, 3) if seconds > 0 else None,
                   "processes": world, "batch_size": batch_size, "workers": workers, "device": str(seg.device),
                   "precision": seg.precision, "mode": seg.mode, "aug": bool(seg.aug), "max_size": max_size,
                   "failed": failed,
                   "outputs": {str(p): output_names(st) for p, st in zip(paths, stems) if str(p) not in bad}}
        if write_summary and rank == 0:
            from .io.atomic import atomic_write_text

            atomic_write_text(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
        if distributed:
            dist.barrier()  # nobody leaves before the summary is written
        return {**summary, "rank": rank, "written": [written[i] for i in sorted(written)]}
    finally:
        if started_group and dist.is_initialized():
            dist.destroy_process_group()


def format_summary(summary: dict[str, Any], out_dir: str | os.PathLike) -> str:
    per = ", ".join(str(n) for n in summary["per_rank"])
    rate = summary["images_per_s"]
    text = (f"wrote {summary['images']} label maps and overlays to {out_dir} in {summary['seconds']:.2f} s "
            f"({rate if rate is not None else '-'} images/s; {summary['processes']} process(es), per rank [{per}]; "
            f"summary in {Path(out_dir) / SUMMARY_NAME})")
    failed = summary.get("failed") or []
    if failed:
        names = ", ".join(Path(f["path"]).name for f in failed[:5]) + (f" (+{len(failed) - 5} more)" if len(failed) > 5 else "")
        text += f"; {len(failed)} image(s) could not be read and were skipped: {names}"
    return text

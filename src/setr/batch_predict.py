"""Prediction over many images, on one process or many (``torchrun --nproc_per_node N -m setr predict ...``).

* The input list (``find_images``: files and folders in the order given, each folder's images sorted) is cut into
  contiguous shards, one per process (``RANK`` / ``WORLD_SIZE`` from torchrun); every process writes the outputs
  of its own shard, named as one process names them (``<stem>.png`` label map, ``<stem>_overlay.jpg``; an image
  whose stem is taken already gets its folder's name as a prefix), so N processes write exactly the files one
  process writes: none twice, none missing.
* A ``DataLoader`` decodes the images in worker processes (``workers``), so the model does not wait on decoding;
  ``batch_size`` > 1 runs consecutive images of equal size through the network together (images of other sizes
  go in smaller batches).
* The run ends with a summary, printed and written to ``OUT/predict_summary.json`` by rank 0:
  ``{"images": N, "per_rank": [n0, n1, ...], "seconds": s, "images_per_s": N / s, ...}``.

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
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .errors import SetrError

from .io.images import find_images, read_image

SUMMARY_NAME = "predict_summary.json"
logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------- naming
def output_stems(paths: Sequence[Path]) -> list[str]:
    """The output stem of every input, as one process names them: the file's stem, or (taken already)
    ``<folder>_<stem>``, then ``<folder>_<stem>_<k>``. Computed over the whole list on every rank."""
    stems: list[str] = []
    seen: set[str] = set()
    for path in paths:
        stem, k = path.stem, 1
        if stem in seen:  # the same name in two input folders: keep both, prefixed by the folder
            stem = f"{path.parent.name}_{path.stem}"
        while stem in seen:
            k += 1
            stem = f"{path.parent.name}_{path.stem}_{k}"
        seen.add(stem)
        stems.append(stem)
    return stems


def shard(n: int, rank: int, world_size: int) -> range:
    """Contiguous share of ``range(n)`` for ``rank``: sizes differ by at most one, earlier ranks larger."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


# --------------------------------------------------------------------------------------------------- data
class ImageFiles(torch.utils.data.Dataset):
    """(index, (H, W, 3) uint8 RGB) for each path, decoded in the DataLoader's workers."""

    def __init__(self, paths: Sequence[Path], indices: Iterable[int]):
        self.paths = list(paths)
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | str]:
        """(index, image), or (index, the one-line reason) for a file that cannot be read: the run goes on."""
        index = self.indices[i]
        try:
            return index, read_image(self.paths[index])
        except SetrError as exc:
            return index, str(exc)


def _keep_list(batch: list) -> list:
    return batch  # images of different sizes cannot be stacked; batching happens in segment_batch


# --------------------------------------------------------------------------------------------------- compute
def segment_batch(seg, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Label maps of images of one size, run through the network together (the Segmenter's own test pipeline:
    its views, resizing, normalisation, inference mode and precision)."""
    return seg.predict_batch(images)  # labels only: no probability map kept (issue 21)


def _same_size_runs(items: list[tuple[int, np.ndarray]]) -> list[list[tuple[int, np.ndarray]]]:
    runs: list[list[tuple[int, np.ndarray]]] = []
    for item in items:
        if runs and runs[-1][0][1].shape == item[1].shape:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


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


def predict_files(seg, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *, batch_size: int = 1,
                  workers: int = 2, progress: bool = True, distributed: bool | None = None,
                  write_summary: bool = False) -> dict[str, Any]:
    """Predict every input image with ``seg`` (a :class:`~setr.inference.Segmenter`) and write its outputs.

    ``distributed`` (default: when ``WORLD_SIZE`` > 1) shards the list over the torchrun processes (the process
    group is started here if needed: NCCL for CUDA, gloo otherwise). Returns the summary, with ``written`` (this
    process's label-map paths, in input order) and ``rank`` added; ``write_summary`` writes it (rank 0) to
    ``out_dir/predict_summary.json``."""
    import torch.distributed as dist
    from tqdm import tqdm

    if batch_size < 1 or workers < 0:
        raise SetrError(f"batch size must be >= 1 and workers >= 0 (got {batch_size}, {workers})")
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
        paths = find_images(inputs)
        stems = output_stems(paths)
        mine = shard(len(paths), rank, world)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        loader = torch.utils.data.DataLoader(ImageFiles(paths, mine), batch_size=batch_size, shuffle=False,
                                             num_workers=workers, collate_fn=_keep_list,
                                             pin_memory=seg.device.type == "cuda")
        if distributed:
            dist.barrier()
        t0 = time.perf_counter()
        written: list[Path] = []
        bar = tqdm(total=len(mine), desc=f"predict[{rank}]" if distributed else "predict", unit="img",
                   disable=not progress or rank != 0)
        failed: list[dict[str, str]] = []
        for batch in loader:
            for index, error in [(i, im) for i, im in batch if isinstance(im, str)]:
                logger.warning(f"skipped: {error}")
                failed.append({"path": str(paths[index]), "error": error})
                bar.update(1)
            for run in _same_size_runs([(i, im) for i, im in batch if not isinstance(im, str)]):
                labels = segment_batch(seg, [im for _, im in run])
                for (index, image), lab in zip(run, labels):
                    written.append(write_outputs(seg, image, lab, out, stems[index]))
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
        summary = {"images": int(sum(per_rank)), "per_rank": per_rank, "seconds": round(seconds, 3),
                   "images_per_s": round(sum(per_rank) / seconds, 3) if seconds > 0 else None,
                   "processes": world, "batch_size": batch_size, "workers": workers, "device": str(seg.device),
                   "precision": seg.precision, "mode": seg.mode, "aug": bool(seg.aug), "failed": failed}
        if write_summary and rank == 0:
            from .io.atomic import atomic_write_text

            atomic_write_text(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
        if distributed:
            dist.barrier()  # nobody leaves before the summary is written
        return {**summary, "rank": rank, "written": written}
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

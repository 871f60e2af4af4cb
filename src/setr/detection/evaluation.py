"""COCO bbox evaluation and prediction files, through the authors' test path (:class:`.api.Detector`).

* :func:`evaluate_detector`: every image of a COCO split decoded with OpenCV, resized / normalised / padded as
  the original test pipeline, detected and post-processed as mmdet 2.26 does; results written as mmdet's
  ``results2json`` writes them (bbox x, y, w, h from the float32 corners, score as a float); pycocotools
  ``COCOeval`` (bbox). ``batch_size`` 1 is the original's ``tools/test.py`` (``samples_per_gpu`` 1); larger
  batches pad their images together, as mmdet does.
* :func:`predict_files`: files and folders (recursively) -> ``OUT/<stem>_boxes.jpg`` drawings (one naming rule
  with ``setr predict``: no two inputs share an output) and ``OUT/results.bbox.json`` (COCO results entries plus
  each image's ``file_name``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..dist import DistInfo
from ..errors import SetrError
from ..io.atomic import atomic_write

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
RESULTS_NAME = "results.bbox.json"
PALETTE = ("red", "blue", "lime", "yellow", "magenta", "cyan", "orange", "white")


def check_categories(ckpt_categories: list[dict] | None, dataset, where: str) -> None:
    if ckpt_categories is None:
        return
    ours = [(int(c["id"]), str(c["name"])) for c in ckpt_categories]
    theirs = [(int(c["id"]), str(c["name"])) for c in dataset.categories]
    if ours != theirs:
        raise SetrError(f"{where}: checkpoint categories ({len(ours)}: {', '.join(n for _, n in ours[:5])}"
                        f"{', ...' if len(ours) > 5 else ''}) do not match {dataset.ann_file} "
                        f"({len(theirs)}: {', '.join(n for _, n in theirs[:5])}{', ...' if len(theirs) > 5 else ''})")


def _detector_for(model, device, amp: str | None):
    from .api import Detector

    if isinstance(model, Detector):
        return model
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    return Detector(model, model.cfg, device=dev, precision=amp or "fp32")


@torch.no_grad()
def detect_results(model, dataset, *, batch_size: int = 1, device=None, amp: str | None = None,
                   info: DistInfo | None = None, progress: bool = False) -> list[dict]:
    """COCO results (image_id, category_id = the dataset's COCO id, bbox xywh, score) for this rank's share.
    ``model``: a :class:`RetinaNetHLG` (its training mode is restored) or a :class:`Detector`."""
    from tqdm import tqdm

    from ..io.images import read_image

    if device is None and info is not None:
        device = info.device
    was_training = getattr(model, "training", False)
    det = _detector_for(model, device, amp)
    indices = list(range(len(dataset)))
    if info is not None and info.distributed:
        indices = indices[info.rank::info.world_size]
    results: list[dict] = []
    try:
        for start in tqdm(range(0, len(indices), batch_size), desc="eval", disable=not progress,
                          dynamic_ncols=True):
            chunk = indices[start:start + batch_size]
            dets = det.predict_batch([read_image(dataset.image_path(i)) for i in chunk])
            for i, d in zip(chunk, dets):
                results += d.to_coco(int(dataset.ids[i]), dataset.cat_ids)
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    return results


def coco_bbox_eval(dataset, results: list[dict], img_ids: Sequence[int] | None = None) -> dict:
    """pycocotools COCOeval (bbox) -> AP, AP50, AP75, APs, APm, APl (fractions) and per_category AP."""
    import contextlib
    import io

    import numpy as np
    from pycocotools.cocoeval import COCOeval

    metrics: dict[str, Any] = {k: 0.0 for k in METRIC_NAMES}
    metrics["per_category"] = {n: 0.0 for n in dataset.class_names}
    if not results:
        metrics["summary"] = "no detections"
        return metrics
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        dt = dataset.coco.loadRes(results)
        ev = COCOeval(dataset.coco, dt, "bbox")
        ev.params.imgIds = list(img_ids) if img_ids is not None else list(dataset.ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics.update({k: max(float(v), 0.0) for k, v in zip(METRIC_NAMES, ev.stats[:6])})
    precision = ev.eval["precision"]  # (T, R, K, A, M); K follows ev.params.catIds (sorted ids)
    for k, cid in enumerate(ev.params.catIds):
        pr = precision[:, :, k, 0, -1]
        pr = pr[pr > -1]
        metrics["per_category"][dataset.class_names[dataset.cat_to_label[cid]]] = float(np.mean(pr)) if pr.size else 0.0
    metrics["summary"] = buf.getvalue()
    return metrics


def evaluate_detector(model, dataset, *, batch_size: int = 1, device=None, amp: str | None = None,
                      info: DistInfo | None = None, results_json: str | Path | None = None,
                      categories: list[dict] | None = None, progress: bool = False,
                      results_out: list | None = None) -> dict:
    """COCO bbox AP of ``model`` on ``dataset``; ``results_json`` gets the detections in the COCO results format
    (and the list ``results_out``, when given, is extended with them: ``setr detect test --report``).
    ``categories`` (e.g. a checkpoint's) must match the dataset's, else SetrError. Under DDP every rank detects a
    share; rank 0 gathers and evaluates, the others get {}."""
    check_categories(categories, dataset, "evaluate")
    results = detect_results(model, dataset, batch_size=batch_size, device=device, amp=amp, info=info,
                             progress=progress)
    if info is not None and info.distributed:
        import torch.distributed as dist

        gathered: list = [None] * info.world_size
        dist.all_gather_object(gathered, results)
        results = [r for part in gathered for r in part]
        if not info.is_main:
            return {}
    if results_json is not None:
        write_json(results_json, results)
    if results_out is not None:
        results_out.extend(results)
    metrics = coco_bbox_eval(dataset, results)
    metrics["num_detections"] = len(results)
    return metrics


def write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj)))
    return path


def format_metrics(metrics: dict) -> str:
    """AP line plus a per-category table, for the CLI."""
    lines = ["  ".join(f"{k} {100 * metrics[k]:.1f}" for k in METRIC_NAMES), "", f"{'category':<24} AP"]
    for name, ap in metrics.get("per_category", {}).items():
        lines.append(f"{name:<24} {100 * ap:.1f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- prediction
def draw(image, dets, class_names: Sequence[str]):
    """(H, W, 3) uint8 RGB with the boxes drawn (torchvision ``draw_bounding_boxes``) -> PIL image."""
    import numpy as np
    from PIL import Image
    from torchvision.utils import draw_bounding_boxes

    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if len(dets):
        names = [f"{class_names[int(lab)] if int(lab) < len(class_names) else int(lab)} {float(s):.2f}"
                 for lab, s in zip(dets.labels, dets.scores)]
        colours = [PALETTE[int(lab) % len(PALETTE)] for lab in dets.labels]
        img = draw_bounding_boxes(img, dets.boxes, labels=names, colors=colours, width=2)
    return Image.fromarray(img.permute(1, 2, 0).numpy())


@torch.no_grad()
def drawing_names(stem: str) -> list[str]:
    """The files ``setr detect predict`` writes for one input: the drawing of its boxes."""
    return [f"{stem}_boxes.jpg"]


def predict_files(det, inputs: Sequence[str | Path], out_dir: str | Path, score_thresh: float = 0.3,
                  progress: bool = False) -> dict:
    """Detect on image files and folders (recursively, each folder's images sorted); write
    ``out_dir/<stem>_boxes.jpg`` (boxes with score >= ``score_thresh``) and ``out_dir/results.bbox.json`` (every
    detection the post-processing keeps, COCO results entries with ``image_id`` = the input's index and its
    ``file_name``). Returns {"written": [...], "results": path, "boxes_drawn": [...], "num_detections": n}."""
    from tqdm import tqdm

    from ..batch_predict import SUMMARY_NAME, collect_inputs
    from ..io.atomic import atomic_write_text
    from ..io.images import read_image

    out_dir = Path(out_dir)
    # the same inputs and names as `setr predict`: an --out inside an input folder and the files an earlier run
    # recorded are left out, and no output may land on an input
    files, stems = collect_inputs(inputs, out_dir, names=drawing_names)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, drawn, results = [], [], []
    for idx, (f, stem) in enumerate(tqdm(list(zip(files, stems)), desc="detect", disable=not progress,
                                         dynamic_ncols=True)):
        image = read_image(f)
        dets = det.predict(image)
        for r in dets.to_coco(idx, det.category_ids):
            results.append({**r, "file_name": str(f)})
        shown = dets.above(score_thresh)
        dst = out_dir / drawing_names(stem)[0]
        atomic_write(dst, lambda tmp: draw(image, shown, det.class_names).save(tmp, format="JPEG", quality=90))
        written.append(dst)
        drawn.append(len(shown))
    res_path = write_json(out_dir / RESULTS_NAME, results)
    summary = {"images": len(files), "results": RESULTS_NAME, "num_detections": len(results),
               "score_thresh": score_thresh,
               "outputs": {str(f): drawing_names(stem) for f, stem in zip(files, stems)}}
    atomic_write_text(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return {"written": written, "results": res_path, "boxes_drawn": drawn, "num_detections": len(results)}

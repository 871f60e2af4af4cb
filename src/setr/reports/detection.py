"""The detection evaluation report: ``report.html`` and ``report.json``.

Per-class AP (AP@[.5:.95] and AP50, from pycocotools' COCOeval precision array) as a sorted bar chart and a
table, and the images with the most missed or false boxes, drawn: ground truth in green, detections that match
one (same class, IoU >= ``iou_threshold``, greedy by score as COCO matches) in blue, false detections in red
with their label and score, missed ground truth in orange. Only detections scoring at least
``score_threshold`` count as "shown" for the misses and false boxes (the AP uses them all).
"""
from __future__ import annotations

import contextlib
import io
import math
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from . import html as H
from .charts import sorted_bars

GT_COLOUR, MATCH_COLOUR, FALSE_COLOUR, MISSED_COLOUR = "#22aa22", "#1f5fd0", "#e02020", "#ff9900"


def coco_evaluate(coco_gt, results: Sequence[dict]):
    """A quiet pycocotools COCOeval (bbox), evaluated and accumulated; None without detections."""
    from pycocotools.cocoeval import COCOeval

    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco_gt, coco_gt.loadRes(list(results)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def per_class_ap(coco_eval, coco_gt) -> list[dict]:
    """One row per category of ``coco_gt``: AP over IoU .5:.95 and AP50 (area all, max dets 100), None where the
    category has no ground truth."""
    rows = []
    cats = sorted(coco_gt.getCatIds())
    index = {cid: k for k, cid in enumerate(coco_eval.params.catIds)} if coco_eval is not None else {}
    for cid in cats:
        ap = ap50 = None
        if cid in index:
            pr = coco_eval.eval["precision"][:, :, index[cid], 0, -1]
            valid = pr[pr > -1]
            ap = float(valid.mean()) if valid.size else None
            valid50 = pr[0][pr[0] > -1]
            ap50 = float(valid50.mean()) if valid50.size else None
        elif coco_gt.getAnnIds(catIds=[cid]):  # no detections at all: AP 0
            ap = ap50 = 0.0
        rows.append({"id": cid, "class": coco_gt.cats[cid]["name"], "AP": ap, "AP50": ap50,
                     "num_gt": len(coco_gt.getAnnIds(catIds=[cid], iscrowd=False))})
    return rows


def match_image(gts: Sequence[dict], dets: Sequence[dict], iou_threshold: float) -> tuple[list, list, list]:
    """Greedy matching (by descending score, same category): (matched dets, false dets, missed gts)."""
    import torch
    from torchvision.ops import box_iou

    def xyxy(b):
        return [b[0], b[1], b[0] + b[2], b[1] + b[3]]

    dets = sorted(dets, key=lambda d: -d["score"])
    gts = [g for g in gts if not g.get("iscrowd")]
    used = [False] * len(gts)
    matched, false = [], []
    if gts and dets:
        iou = box_iou(torch.tensor([xyxy(d["bbox"]) for d in dets], dtype=torch.float64),
                      torch.tensor([xyxy(g["bbox"]) for g in gts], dtype=torch.float64)).numpy()
    for i, d in enumerate(dets):
        best, best_j = iou_threshold, -1
        for j, g in enumerate(gts):
            if not used[j] and g["category_id"] == d["category_id"] and iou[i, j] >= best:
                best, best_j = iou[i, j], j
        if best_j >= 0:
            used[best_j] = True
            matched.append(d)
        else:
            false.append(d)
    missed = [g for g, u in zip(gts, used) if not u]
    return matched, false, missed


def _draw(image: np.ndarray, groups: Sequence[tuple[Sequence[dict], str, Callable[[dict], str], int]]):
    import torch
    from torchvision.utils import draw_bounding_boxes

    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    for items, colour, label, width in groups:
        if not items:
            continue
        boxes = torch.tensor([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (x["bbox"] for x in items)],
                             dtype=torch.float32)
        t = draw_bounding_boxes(t, boxes, labels=[label(x) for x in items], colors=colour, width=width)
    return t.permute(1, 2, 0).numpy()


def write_detection_report(out_dir: str | os.PathLike, coco_gt, results: Sequence[dict],
                           image_paths: Mapping[int, str | os.PathLike] | str | os.PathLike, *, coco_eval=None,
                           meta: Mapping | None = None, worst: int = 8, score_threshold: float = 0.3,
                           iou_threshold: float = 0.5, max_side: int = 512) -> Path:
    """``report.html`` + ``report.json`` in ``out_dir`` for detections ``results`` (the COCO results format:
    image_id, category_id, bbox [x, y, w, h], score) against ``coco_gt`` (a pycocotools ``COCO``).

    ``image_paths``: image id -> file, or the folder holding the ``file_name`` of each image.
    ``coco_eval``: an evaluated and accumulated ``COCOeval`` of these results (computed here when None)."""
    from ..evaluation.metrics import to_json
    from ..io.images import read_image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if coco_eval is None:
        coco_eval = coco_evaluate(coco_gt, results)
    names = {cid: c["name"] for cid, c in coco_gt.cats.items()}
    rows = per_class_ap(coco_eval, coco_gt)
    stats_names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    summary = {k: (max(float(v), 0.0) if coco_eval is not None else 0.0)
               for k, v in zip(stats_names, coco_eval.stats[:6] if coco_eval is not None else [0] * 6)}

    by_image: dict[int, list[dict]] = {}
    for r in results:
        if r["score"] >= score_threshold:
            by_image.setdefault(int(r["image_id"]), []).append(r)
    images = []
    for img_id in sorted(coco_gt.getImgIds()):
        gts = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[img_id]))
        matched, false, missed = match_image(gts, by_image.get(img_id, []), iou_threshold)
        images.append({"id": img_id, "file_name": coco_gt.imgs[img_id].get("file_name", str(img_id)),
                       "num_gt": len([g for g in gts if not g.get("iscrowd")]), "matched": len(matched),
                       "false": len(false), "missed": len(missed), "_boxes": (gts, matched, false, missed)})
    ranked = sorted((i for i in images if i["false"] + i["missed"] > 0),
                    key=lambda i: (-(i["false"] + i["missed"]), i["id"]))[:worst]

    def path_of(img: dict) -> Path:
        if isinstance(image_paths, Mapping):
            return Path(image_paths[img["id"]])
        return Path(image_paths) / img["file_name"]

    def det_label(d):
        return f"{names.get(d['category_id'], d['category_id'])} {d['score']:.2f}"

    items = []
    for rank, img in enumerate(ranked, 1):
        gts, matched, false, missed = img["_boxes"]
        picture = _draw(read_image(path_of(img)), [
            # missed boxes wide and first: a false box drawn over the same place leaves their outer ring visible
            ([g for g in gts if g not in missed and not g.get("iscrowd")], GT_COLOUR, lambda g: "", 4),
            (missed, MISSED_COLOUR, lambda g: f"missed {names.get(g['category_id'], '')}", 4),
            (matched, MATCH_COLOUR, det_label, 2), (false, FALSE_COLOUR, det_label, 2)])
        picture = H.downscale(picture, max_side, nearest=False)
        items.append(f'<div class="gallery-item"><div><b>{rank}. {H.esc(img["file_name"])}</b>: '
                     f'{img["missed"]} missed, {img["false"]} false of {img["num_gt"]} ground-truth boxes</div>'
                     f'<div class="row"><figure>{H.img_tag(H.png_uri(picture), img["file_name"], "panel")}'
                     "</figure></div></div>")

    chart = _ap_chart(rows)
    table = "".join(
        f'<tr class="class-row"><td class="name">{H.esc(r["class"])}</td><td>{_pct(r["AP"])}</td>'
        f'<td>{_pct(r["AP50"])}</td><td>{r["num_gt"]}</td></tr>' for r in rows)
    legend = ('<p class="legend"><span style="color:#22aa22">&#9632; ground truth</span>'
              '<span style="color:#1f5fd0">&#9632; matched detection</span>'
              '<span style="color:#e02020">&#9632; false detection</span>'
              '<span style="color:#ff9900">&#9632; missed ground truth</span></p>')
    shown = {k: f"{100 * v:.2f}%" for k, v in summary.items()}
    shown.update({k: v for k, v in (meta or {}).items() if v is not None})
    shown.update({"detections": len(results), "score threshold (drawn, counted)": score_threshold,
                  "IoU threshold (matching)": iou_threshold})
    sections = [
        "<h2>Summary</h2>" + H.key_value_table(shown, "summary"),
        "<h2>Per class</h2>" + chart + '<table id="classes"><tr><th class="name">class</th><th>AP %</th>'
        f"<th>AP50 %</th><th>ground-truth boxes</th></tr>{table}</table>",
        f"<h2>The {len(items)} images with the most missed or false boxes</h2>" + legend
        + (f'<div id="worst-images">{"".join(items)}</div>' if items else "<p>No missed or false box.</p>"),
    ]
    page = H.write_page(out, "report.html", H.page("setr detection report", sections))
    data = {"meta": dict(meta or {}), "metrics": summary, "per_class": rows, "score_threshold": score_threshold,
            "iou_threshold": iou_threshold,
            "images": [{k: v for k, v in i.items() if k != "_boxes"} for i in images],
            "worst_images": [i["file_name"] for i in ranked]}
    H.write_page(out, "report.json", to_json(data))
    return page


def _pct(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def _ap_chart(rows: list[dict]) -> str:
    return sorted_bars([r["class"] for r in rows],
                       {"AP@[.5:.95]": [None if r["AP"] is None else 100 * r["AP"] for r in rows],
                        "AP50": [None if r["AP50"] is None else 100 * r["AP50"] for r in rows]},
                       "per-class AP (sorted)", "per-class-chart")

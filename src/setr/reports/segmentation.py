"""The segmentation evaluation report: ``report.html`` (one offline page) and ``report.json`` beside it.

:class:`SegmentationReport` is fed one (prediction, ground truth[, image]) pair at a time while an evaluation
runs (``setr test --report``, ``setr evaluate --report``); it keeps the dataset's confusion matrix (rows: ground
truth, columns: prediction; ignored pixels and labels outside the classes left out, as the metrics do), each
image's own mIoU (nan-mean of the IoU of the classes present in that image's ground truth or prediction) and, for
the ``worst`` images by that mIoU, small copies of the image, the ground truth and the prediction.
"""
from __future__ import annotations

import heapq
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from . import html as H
from .charts import confusion_heatmap, counts_table, sorted_bars

ERROR_COLOUR = (220, 30, 30)  # a wrong pixel in the error map
IGNORE_COLOUR = (0, 0, 0)  # a pixel the ground truth ignores


def _colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = palette[:256]
    return table[np.clip(labels, 0, 255).astype(np.uint8)]


def per_class_iou(cm: np.ndarray) -> np.ndarray:
    """IoU of every class from a confusion matrix (NaN where the class is in neither ground truth nor prediction)."""
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def error_map(pred: np.ndarray, gt: np.ndarray, ignore_index: int, image: np.ndarray | None = None) -> np.ndarray:
    """Correct pixels as the image in grey (or light grey without one), wrong ones red, ignored ones black."""
    if image is not None:
        grey = image.astype(np.float32).mean(-1, keepdims=True) * 0.6 + 60
        out = np.repeat(grey, 3, -1).astype(np.uint8)
    else:
        out = np.full(gt.shape + (3,), 200, dtype=np.uint8)
    out[(pred != gt) & (gt != ignore_index)] = ERROR_COLOUR
    out[gt == ignore_index] = IGNORE_COLOUR
    return out


class SegmentationReport:
    def __init__(self, num_classes: int, class_names: Sequence[str] | None, palette, ignore_index: int = 255,
                 worst: int = 8, max_side: int = 384):
        self.k = num_classes
        self.names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
        self.ignore_index = ignore_index
        self.worst_n = worst
        self.max_side = max_side
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.images: list[dict] = []  # name, mIoU of each image, in order
        self._heap: list = []  # (-mIoU, order, entry): the `worst` lowest mIoUs

    def add(self, name: str, pred: np.ndarray, gt: np.ndarray, image: np.ndarray | None = None) -> float:
        """Count one image; returns its own mIoU (NaN when its ground truth is all ignored)."""
        pred = np.asarray(pred).astype(np.int64)
        gt = np.asarray(gt).astype(np.int64)
        keep = (gt != self.ignore_index) & (gt >= 0) & (gt < self.k) & (pred >= 0) & (pred < self.k)
        cm = np.bincount(gt[keep] * self.k + pred[keep], minlength=self.k * self.k).reshape(self.k, self.k)
        self.confusion += cm
        iou = per_class_iou(cm)
        miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
        self.images.append({"name": name, "mIoU": None if math.isnan(miou) else miou})
        if not math.isnan(miou) and self.worst_n > 0:
            entry = {"name": name, "mIoU": miou,
                     "pred": H.downscale(pred.astype(np.uint8 if self.k <= 256 else np.int32), self.max_side, True),
                     "gt": H.downscale(np.where(gt == self.ignore_index, 255, gt).astype(np.uint8), self.max_side,
                                       True),
                     "image": None if image is None else H.downscale(np.asarray(image)[..., :3], self.max_side,
                                                                     False)}
            item = (-miou, -len(self.images), entry)  # ties: the earlier image stays
            if len(self._heap) < self.worst_n:
                heapq.heappush(self._heap, item)
            elif item > self._heap[0]:
                heapq.heapreplace(self._heap, item)
        return miou

    @property
    def worst(self) -> list[dict]:
        return [e for _, _, e in sorted(self._heap, key=lambda t: (-t[0], -t[1]))]

    # --- the page -------------------------------------------------------------------------------------------
    def _swatch(self, c: int) -> str:
        r, g, b = (int(v) for v in self.palette[c]) if c < len(self.palette) else (0, 0, 0)
        return f'<span class="swatch" style="background:rgb({r},{g},{b})"></span>'

    def _bar_chart(self, per_class: list[dict]) -> str:
        return sorted_bars([r["class"] for r in per_class],
                           {"IoU": [None if r["IoU"] is None else 100 * r["IoU"] for r in per_class],
                            "Acc": [None if r["Acc"] is None else 100 * r["Acc"] for r in per_class]},
                           "per-class IoU and accuracy (sorted by IoU)", "per-class-chart")

    def _class_table(self, per_class: list[dict]) -> str:
        gt_px, pred_px = self.confusion.sum(1), self.confusion.sum(0)
        rows = []
        for c, r in enumerate(per_class):
            iou = "n/a" if r["IoU"] is None else f"{100 * r['IoU']:.2f}"
            acc = "n/a" if r["Acc"] is None else f"{100 * r['Acc']:.2f}"
            rows.append(f'<tr class="class-row"><td class="name">{self._swatch(c)}{H.esc(r["class"])}</td>'
                        f"<td>{iou}</td><td>{acc}</td><td>{int(gt_px[c])}</td><td>{int(pred_px[c])}</td></tr>")
        return ('<table id="classes"><tr><th class="name">class</th><th>IoU %</th><th>Acc %</th>'
                f'<th>ground-truth pixels</th><th>predicted pixels</th></tr>{"".join(rows)}</table>')

    def _gallery(self) -> str:
        items = []
        for rank, e in enumerate(self.worst, 1):
            gt, pred = e["gt"], e["pred"]
            panels = []
            if e["image"] is not None:
                panels.append((e["image"], "image"))
            gt_rgb = _colorize(gt, self.palette)
            gt_rgb[gt == 255] = IGNORE_COLOUR
            panels += [(gt_rgb, "ground truth"), (_colorize(pred, self.palette), "prediction"),
                       (error_map(pred, gt, 255, e["image"]), "errors (red; black: ignored)")]
            figs = "".join(f"<figure>{H.img_tag(H.png_uri(a), e['name'] + ': ' + what, 'panel')}"
                           f"<figcaption>{H.esc(what)}</figcaption></figure>" for a, what in panels)
            present = sorted((set(np.unique(gt).tolist()) | set(np.unique(pred).tolist())) - {255})
            present = [c for c in present if c < self.k]
            legend = "".join(f"<span>{self._swatch(c)}{H.esc(self.names[c])}</span>" for c in present)
            items.append(f'<div class="gallery-item"><div><b>{rank}. {H.esc(e["name"])}</b>: mIoU '
                         f'{100 * e["mIoU"]:.2f}%</div><div class="row">{figs}</div>'
                         f'<div class="legend">{legend}</div></div>')
        if not items:
            return "<p>No image with scored pixels.</p>"
        return f'<div id="worst-images">{"".join(items)}</div>'

    def to_json(self, metrics: dict, meta: dict) -> dict:
        return {"meta": meta, "metrics": metrics,
                "confusion_matrix": {"rows": "ground truth", "columns": "prediction", "classes": self.names,
                                     "counts": self.confusion.tolist()},
                "images": sorted(self.images, key=lambda r: (r["mIoU"] is None, r["mIoU"] or 0.0)),
                "worst_images": [{"name": e["name"], "mIoU": e["mIoU"]} for e in self.worst]}

    def write(self, out_dir: str | Path, metrics: dict, meta: dict, title: str = "setr evaluation report") -> Path:
        """``report.html`` and ``report.json`` in ``out_dir`` (created); returns the page's path."""
        from ..evaluation.metrics import to_json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        headline = {k: metrics[k] for k in ("aAcc", "mIoU", "mAcc") if k in metrics}
        shown = {k: (f"{100 * v:.2f}%" if isinstance(v, float) and not math.isnan(v) else v)
                 for k, v in headline.items()}
        shown.update({k: v for k, v in meta.items() if v is not None})
        sections = [
            "<h2>Summary</h2>" + H.key_value_table(shown, "summary"),
            "<h2>Per class</h2>" + self._bar_chart(metrics["per_class"]) + self._class_table(metrics["per_class"]),
            "<h2>Confusion matrix</h2>" + confusion_heatmap(self.confusion, self.names)
            + counts_table(self.confusion, self.names),
            f"<h2>The {len(self._heap)} worst images by their own mIoU</h2>" + self._gallery(),
        ]
        page = H.write_page(out, "report.html", H.page(title, sections))
        H.write_page(out, "report.json", to_json(self.to_json(metrics, meta)))
        return page



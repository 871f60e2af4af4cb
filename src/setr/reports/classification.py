"""The classification evaluation report (``setr classify test --report DIR``): ``report.html`` + ``report.json``.

Top-1 / top-5 with the preset and checkpoint, per-class accuracy (top-1 recall) as a sorted bar chart and a
table, the confusion matrix (a heat map up to 60 classes; beyond, the most frequent confusions as a table), and
the most confident mistakes, with their pictures.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from . import html as H
from .charts import confusion_heatmap, counts_table, sorted_bars


def observe(model, loader, report: "ClassificationReport", paths: Sequence[str | os.PathLike]):
    """A model and a loader that feed ``report`` while an evaluation loop runs them, so the report needs no
    second pass: the loader notes each batch's targets (in order: no shuffling), the model adds its outputs."""
    import torch

    pending: list[tuple[list[int], int]] = []

    class Observed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            out = self.inner(x)
            targets, start = pending.pop(0)
            probs = out.detach().float().softmax(1).cpu().numpy()
            report.add(probs, targets, paths[start:start + len(targets)])
            return out

    class Loader:
        def __len__(self):
            return len(loader)

        def __iter__(self):
            start = 0
            for images, targets in loader:
                pending.append((targets.tolist(), start))
                start += len(targets)
                yield images, targets

    return Observed(), Loader()


class ClassificationReport:
    def __init__(self, class_names: Sequence[str], worst: int = 8, max_side: int = 192):
        self.names = list(class_names)
        k = len(self.names)
        self.confusion = np.zeros((k, k), dtype=np.int64)
        self.worst_n = worst
        self.max_side = max_side
        self.mistakes: list[dict] = []  # every wrong prediction: path, true, predicted, confidence

    def add(self, probs: np.ndarray, targets: Sequence[int], paths: Sequence[str | os.PathLike]) -> None:
        """One batch: (B, K) class probabilities, the true classes, the image files."""
        probs = np.asarray(probs, dtype=np.float64)
        pred = probs.argmax(1)
        k = len(self.names)
        t = np.asarray(targets, dtype=np.int64)
        self.confusion += np.bincount(t * k + pred, minlength=k * k).reshape(k, k)
        for i in np.nonzero(pred != t)[0]:
            self.mistakes.append({"path": str(paths[i]), "true": self.names[t[i]], "predicted": self.names[pred[i]],
                                  "confidence": float(probs[i, pred[i]]),
                                  "true_probability": float(probs[i, t[i]])})

    @property
    def worst(self) -> list[dict]:
        return sorted(self.mistakes, key=lambda m: (-m["confidence"], m["path"]))[: self.worst_n]

    def write(self, out_dir: str | os.PathLike, metrics: Mapping, meta: Mapping) -> Path:
        from ..evaluation.metrics import to_json
        from ..io.images import read_image

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        totals = self.confusion.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = np.diag(self.confusion) / totals
        per_class = [{"class": n, "Acc": None if not totals[c] else float(acc[c]), "images": int(totals[c]),
                      "predicted": int(self.confusion[:, c].sum())} for c, n in enumerate(self.names)]
        shown = {k: (f"{v:.2f}%" if k in ("top1", "top5") else v) for k, v in metrics.items()}
        shown.update({k: v for k, v in meta.items() if v is not None})
        rows = "".join(f'<tr class="class-row"><td class="name">{H.esc(r["class"])}</td>'
                       f'<td>{_pct(r["Acc"])}</td><td>{r["images"]}</td><td>{r["predicted"]}</td></tr>'
                       for r in per_class)
        table = ('<table id="classes"><tr><th class="name">class</th><th>top-1 accuracy %</th><th>images</th>'
                 f"<th>predicted as this class</th></tr>{rows}</table>")
        k = len(self.names)
        if k <= 60:
            confusion = confusion_heatmap(self.confusion, self.names) + counts_table(self.confusion, self.names,
                                                                                     "image")
        else:
            off = self.confusion.copy()
            np.fill_diagonal(off, 0)
            top = np.argsort(-off, axis=None, kind="stable")[:20]
            cells = "".join(f'<tr><td class="name">{H.esc(self.names[i // k])}</td><td class="name">'
                            f"{H.esc(self.names[i % k])}</td><td>{int(off.flat[i])}</td></tr>"
                            for i in top if off.flat[i] > 0)
            confusion = ('<table id="top-confusions"><tr><th class="name">true</th><th class="name">predicted</th>'
                         f"<th>images</th></tr>{cells}</table>")
        items = []
        for rank, m in enumerate(self.worst, 1):
            picture = H.downscale(read_image(m["path"]), self.max_side, nearest=False)
            items.append(f'<div class="gallery-item"><div><b>{rank}. {H.esc(Path(m["path"]).name)}</b>: '
                         f'{H.esc(m["true"])} taken for {H.esc(m["predicted"])} ({100 * m["confidence"]:.1f}%; '
                         f'true class {100 * m["true_probability"]:.1f}%)</div><div class="row"><figure>'
                         f'{H.img_tag(H.png_uri(picture), Path(m["path"]).name, "panel")}</figure></div></div>')
        sections = [
            "<h2>Summary</h2>" + H.key_value_table(shown, "summary"),
            "<h2>Per class</h2>" + sorted_bars(self.names, {"top-1 accuracy": [
                None if r["Acc"] is None else 100 * r["Acc"] for r in per_class]},
                "per-class top-1 accuracy (sorted)", "per-class-chart") + table,
            "<h2>Confusion</h2>" + confusion,
            f"<h2>The {len(items)} most confident mistakes</h2>"
            + (f'<div id="worst-images">{"".join(items)}</div>' if items else "<p>No mistake.</p>"),
        ]
        page = H.write_page(out, "report.html", H.page("setr classification report", sections))
        data = {"meta": dict(meta), "metrics": dict(metrics), "per_class": per_class,
                "confusion_matrix": {"rows": "true class", "columns": "prediction", "classes": self.names,
                                     "counts": self.confusion.tolist()},
                "worst_images": self.worst}
        H.write_page(out, "report.json", to_json(data))
        return page


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"

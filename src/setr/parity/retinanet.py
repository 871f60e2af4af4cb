"""RetinaNet-HLG inference golden cases (``tests/fixtures/retinanet_hlg/infer_*.pt``), computed by the authors'
mmdet 2.26 code, checked through the public :class:`setr.detection.api.Detector`.

The detector is built from the case's ``config.model_cfg`` (narrowed widths and depths), its original-format
``state_dict`` goes through the same strict loader as a user's mmdet checkpoint, and the case's photographs run
through ``Detector.detect_batch``: each alone when ``samples_per_gpu`` is 1, padded into one batch otherwise.
Compared per image (the README's tolerances):

* shapes, scale factors and feature-map sizes exactly;
* the normalised padded input: row and column means atol 1e-5 (plus min / max / channel means; the sha256 of
  the float32 bytes is reported);
* raw head outputs (subsampled as the case did): atol 1e-4 x max|golden| of the level;
* candidate counts per level: exactly, or within 2 (a score next to the threshold);
* detections: the same count and labels in the same order, boxes atol 1e-2 px, scores atol 1e-5.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import SetrError
from .base import OutputCheck
from .retinanet_fields import INFERENCE_KIND, validate_retinanet_case

RAW_RELATIVE_TOLERANCE = 1e-4
INPUT_ATOL = 1e-5
BOX_ATOL = 1e-2
SCORE_ATOL = 1e-5
CANDIDATE_SLACK = 2


def is_retinanet_case(case: Mapping[str, Any]) -> bool:
    return str(case.get("config", {}).get("kind", "")).startswith("retinanet_hlg")


def detector_from_case(case: Mapping[str, Any], device: str = "cpu"):
    """The public Detector for a case: model from ``config.model_cfg``, weights through the user's loader."""
    from ..detection.api import Detector, load_state_into
    from ..detection.model import build_retinanet_hlg
    from ..presets.detection import DetModelConfig

    c = case["config"]
    m = c["model_cfg"]
    bb, head, test = m["backbone"], m["bbox_head"], c["test_cfg"]
    anchors = head["anchor_generator"]
    cfg = DetModelConfig(variant="small", embed_dims=tuple(bb["embed_dims"]), num_heads=tuple(bb["num_heads"]),
                         depths=tuple(bb["depths"]), drop_path_rate=0.0, fpn_channels=int(m["neck"]["out_channels"]),
                         head_channels=int(head["feat_channels"]), stacked_convs=int(head["stacked_convs"]),
                         octave_base_scale=float(anchors["octave_base_scale"]),
                         scales_per_octave=int(anchors["scales_per_octave"]),
                         anchor_ratios=tuple(float(r) for r in anchors["ratios"]),
                         score_thresh=float(test["score_thr"]), nms_thresh=float(test["nms"]["iou_threshold"]),
                         detections_per_img=int(test["max_per_img"]), topk_candidates=int(test["nms_pre"]),
                         test_min_size=int(min(c["img_scale"])), max_size=int(max(c["img_scale"])),
                         size_divisible=int(c["test_pipeline"][1]["transforms"][3]["size_divisor"]))
    model = build_retinanet_hlg(cfg, int(head["num_classes"]))
    load_state_into(model, case["state_dict"], f"{c.get('name', 'case')}: state_dict")
    return Detector(model, cfg, device=device, precision="fp32", img_scale=tuple(c["img_scale"]))


def check_retinanet_case(case: Mapping[str, Any], device: str = "cpu", image_dir=None) -> list[OutputCheck]:
    c = case.get("config", {})
    if c.get("kind") != INFERENCE_KIND:
        raise SetrError(f"unknown RetinaNet-HLG case kind {c.get('kind')!r} (this checker: {INFERENCE_KIND})")
    validate_retinanet_case(case)
    image_dir = Path(image_dir) if image_dir is not None else None
    det = detector_from_case(case, device)
    results = case["results"]
    paths = []
    for r in results:
        p = (image_dir / r["file"]) if image_dir is not None else Path(r["file"])
        if not p.is_file():
            raise SetrError(f"{p}: the case's photograph is missing (it lies next to the case file)")
        paths.append(p)
    per_batch = int(c["samples_per_gpu"])
    checks: list[OutputCheck] = []
    for start in range(0, len(paths), per_batch):
        batch = det.detect_batch(paths[start:start + per_batch])
        for j in range(len(batch.metas)):
            checks += _check_image(f"img{start + j}", results[start + j], batch, j, c["subsampling"])
    return checks


def _exact(name: str, got: Any, want: Any) -> OutputCheck:
    same = _same(got, want)
    return OutputCheck(name, 0.0 if same else float("inf"), 0.0, "" if same else f"{got!r} != {want!r}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor) or isinstance(a, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _close(name: str, got: torch.Tensor, want: torch.Tensor, tol: float, note: str = "") -> OutputCheck:
    got, want = torch.as_tensor(got).double().cpu(), torch.as_tensor(want).double().cpu()
    if got.shape != want.shape:
        return OutputCheck(name, float("inf"), tol, f"shape {tuple(got.shape)} != {tuple(want.shape)}")
    err = (got - want).abs().max().item() if want.numel() else 0.0
    return OutputCheck(name, err, tol, note)


def _check_image(tag: str, r: Mapping[str, Any], batch, j: int, sub: Mapping[str, Any]) -> list[OutputCheck]:
    meta = batch.metas[j]
    out: list[OutputCheck] = [
        _exact(f"{tag}.ori_shape", tuple(meta.ori_shape), tuple(r["ori_shape"])),
        _exact(f"{tag}.img_shape", tuple(meta.img_shape), tuple(r["img_shape"])),
        _exact(f"{tag}.pad_shape", tuple(meta.pad_shape), tuple(r["pad_shape"])),
        _exact(f"{tag}.batch_input_shape", tuple(meta.batch_input_shape), tuple(r["batch_input_shape"])),
        _exact(f"{tag}.scale_factor", np.asarray(meta.scale_factor, np.float32),
               np.asarray(r["scale_factor"], np.float32)),
        _exact(f"{tag}.featmap_sizes", batch.featmap_sizes, [tuple(s) for s in r["featmap_sizes"]]),
    ]
    # the normalised padded input
    x = batch.inputs[j].float().cpu()
    d = r["input_digest"]
    sha = hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest() == d["sha256_float32"]
    out.append(_exact(f"{tag}.input.shape", tuple(x.shape), tuple(d["shape"])))
    if tuple(x.shape) == tuple(d["shape"]):
        xd = x.double()
        note = "bit-identical input (sha256)" if sha else "not bit-identical (sha256 differs)"
        out.append(_close(f"{tag}.input.row_mean", x.mean(2), d["row_mean"], INPUT_ATOL, note))
        out.append(_close(f"{tag}.input.col_mean", x.mean(1), d["col_mean"], INPUT_ATOL))
        out.append(_close(f"{tag}.input.channel_mean", x.mean((1, 2)), d["channel_mean"], INPUT_ATOL))
        out.append(_close(f"{tag}.input.min_max", torch.stack([x.min(), x.max()]),
                          torch.tensor([d["min"], d["max"]]), INPUT_ATOL))
        n = x.numel()
        out.append(_close(f"{tag}.input.mean_abs_sq", torch.stack([xd.sum(), xd.abs().sum(), (xd * xd).sum()]) / n,
                          torch.tensor([d["sum"], d["abs_sum"], d["sq_sum"]], dtype=torch.float64) / n, INPUT_ATOL))
        if "input_sub" in r:
            out.append(_close(f"{tag}.input_sub", x[:, ::16, ::16], r["input_sub"], INPUT_ATOL))
    # raw head outputs, subsampled as the case did
    step = int(sub["cls_channel_step"])
    for lvl, (s, t) in enumerate(zip(sub["level_steps"], sub["bbox_level_steps"])):
        for name, got, want in (
                ("cls_scores", batch.cls_scores[lvl][j][::step, ::s, ::s], r["cls_scores_sub"][lvl]),
                ("bbox_preds", batch.bbox_preds[lvl][j][:, ::t, ::t], r["bbox_preds_sub"][lvl])):
            scale = want.double().abs().max().item() if want.numel() else 0.0
            chk = _close(f"{tag}.{name}[{lvl}]", got, want, RAW_RELATIVE_TOLERANCE * scale)
            if scale and np.isfinite(chk.max_abs_err):
                chk.note = f"relative error {chk.max_abs_err / scale:.2e}"
            out.append(chk)
    # candidates per level
    for lvl, (got, want) in enumerate(zip(batch.candidates[j], r["candidates"])):
        err = max(abs(got.above_score_thr - int(want["above_score_thr"])), abs(got.kept_topk - int(want["kept_topk"])))
        out.append(OutputCheck(f"{tag}.candidates[{lvl}]", float(err), float(CANDIDATE_SLACK),
                               f"{got.above_score_thr}/{got.kept_topk} vs {want['above_score_thr']}/"
                               f"{want['kept_topk']}"))
    # detections
    dets = batch.detections[j]
    want_boxes, want_labels = r["det_bboxes"], r["det_labels"]
    out.append(_exact(f"{tag}.num_dets", len(dets), int(r["num_dets"])))
    same_labels = _same(dets.labels.numpy(), want_labels.numpy())
    out.append(OutputCheck(f"{tag}.det_labels", 0.0 if same_labels else float("inf"), 0.0,
                           f"{len(dets)} labels in order" if same_labels else "labels or their order differ"))
    if len(dets) == want_boxes.shape[0]:
        out.append(_close(f"{tag}.det_boxes", dets.boxes, want_boxes[:, :4], BOX_ATOL, "original-image pixels"))
        out.append(_close(f"{tag}.det_scores", dets.scores, want_boxes[:, 4], SCORE_ATOL))
    else:
        out.append(OutputCheck(f"{tag}.det_boxes", float("inf"), BOX_ATOL, "different number of detections"))
    return out

"""RetinaNet-HLG: presets, model structure, COCO data checks, training to a positive AP, exact resume, CLI."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("pycocotools")

from setr import presets  # noqa: E402
from setr.detection import build_retinanet_hlg  # noqa: E402
from setr.cli.detect import register as add_detect_parser  # noqa: E402
from setr.detection.coco import CocoDetection  # noqa: E402
from setr.detection.api import load_detector_checkpoint  # noqa: E402
from setr.detection.evaluation import evaluate_detector  # noqa: E402
from setr.detection.training import train_detector  # noqa: E402
from setr.engine.common import param_groups  # noqa: E402
from setr.detection.model import FPN_STRIDES, anchor_sizes, num_anchors_for  # noqa: E402
from setr.detection.anchors import anchor_generator_from_config  # noqa: E402
from setr.detection.synthetic import write_coco  # noqa: E402
from setr.errors import SetrError  # noqa: E402
from setr.overrides import apply_overrides  # noqa: E402

TINY = "retinanet_hlg_tiny_test"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    return write_coco(tmp_path_factory.mktemp("coco") / "data", n_train=64, n_val=16, size=128, num_classes=2,
                      seed=0)


@pytest.fixture(scope="module")
def trained(coco_root, tmp_path_factory):
    """The tiny preset trained for 8 epochs x 16 iterations (about 20 s on one core)."""
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("train")
    metrics = train_detector(TINY, coco_root, work, progress=False, seed=0)
    return work, metrics


def _cli(argv):
    parser = argparse.ArgumentParser()
    add_detect_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


# ------------------------------------------------------------------------------------------------ model
@pytest.mark.parametrize("name,dims,depths,dp", [
    ("retinanet_hlg_small_fpn_mstrain_1x_coco", (96, 192, 384, 768), (2, 2, 6, 2), 0.1),
    ("retinanet_hlg_medium_fpn_mstrain_1x_coco", (96, 192, 384, 768), (2, 2, 14, 2), 0.3),
    ("retinanet_hlg_large_fpn_mstrain_1x_coco", (128, 256, 512, 1024), (2, 2, 14, 2), 0.3),
])
def test_presets_build_on_meta(name, dims, depths, dp):
    p = presets.get(name, "detection")
    assert name in presets.names("detection")
    assert (p.train.lr, p.train.weight_decay, p.train.epochs, p.train.milestones, p.train.warmup_iters,
            p.train.batch_size) == (1e-4, 1e-4, 12, (8, 11), 500, 16)
    assert p.model.train_min_sizes == (640, 672, 704, 736, 768, 800) and p.model.test_min_size == 800
    with torch.device("meta"):
        model = build_retinanet_hlg(p.model, 80)
    hlg = model.backbone
    assert hlg.embed_dims == dims and hlg.depths == depths and hlg.dense
    # mmdet's FPN: start level 1 (the stride-4 map unused), P6 on C5 ('on_input'), 256 channels
    assert [c.conv.in_channels for c in model.neck.lateral_convs] == list(dims[1:])
    assert [c.conv.in_channels for c in model.neck.fpn_convs] == [256, 256, 256, dims[3], 256]
    assert [c.conv.stride for c in model.neck.fpn_convs] == [(1, 1)] * 3 + [(2, 2)] * 2
    head = model.bbox_head
    assert len(head.cls_convs) == len(head.reg_convs) == 4
    assert head.retina_cls.out_channels == 9 * 80 and head.retina_reg.out_channels == 9 * 4
    assert (p.model.score_thresh, p.model.nms_thresh, p.model.detections_per_img, p.model.topk_candidates) == \
           (0.05, 0.5, 100, 1000)
    assert p.model.max_size == 1333
    keys = set(model.state_dict())
    for k in ("backbone.s0_conv.0.0.weight", "neck.lateral_convs.0.conv.weight", "neck.fpn_convs.4.conv.bias",
              "bbox_head.cls_convs.3.conv.weight", "bbox_head.reg_convs.0.conv.bias", "bbox_head.retina_cls.bias",
              "bbox_head.retina_reg.weight"):
        assert k in keys  # the authors' mmdet checkpoint keys
    dpr = [blk.drop_path.drop_prob if hasattr(blk.drop_path, "drop_prob") else 0.0 for blk in hlg.block4]
    assert dpr[-1] == pytest.approx(dp)


def test_anchor_sizes_and_fpn_strides():
    p = presets.get("retinanet_hlg_small_fpn_mstrain_1x_coco", "detection")
    sizes = anchor_sizes(p.model)
    assert sizes[0] == pytest.approx((32.0, 32 * 2 ** (1 / 3), 32 * 2 ** (2 / 3)))
    assert sizes[-1][0] == pytest.approx(4 * 128)
    tiny = presets.get(TINY, "detection")
    model = build_retinanet_hlg(tiny.model, 3).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.zeros(1, 3, 128, 160))
        cls_scores, bbox_preds = model.bbox_head(feats)
    assert len(feats) == 5
    for f, c, b, s in zip(feats, cls_scores, bbox_preds, FPN_STRIDES):
        hw = (-(-128 // s), -(-160 // s))
        assert f.shape[1] == tiny.model.fpn_channels and f.shape[-2:] == hw
        assert c.shape[1:] == (27, *hw) and b.shape[1:] == (36, *hw)
    anchors = anchor_generator_from_config(tiny.model).grid_anchors([f.shape[-2:] for f in feats])
    assert sum(len(a) for a in anchors) == num_anchors_for((128, 160), tiny.model)
    # the prior-probability bias: every untrained score starts at 0.01
    assert torch.allclose(torch.sigmoid(model.bbox_head.retina_cls.bias), torch.tensor(0.01))


def test_build_variants_and_overrides():
    m = build_retinanet_hlg({"embed_dims": (16, 32, 64, 128), "num_heads": (1, 2, 4, 8), "depths": (1, 1, 1, 1)},
                            2, fpn_channels=32, head_channels=24, stacked_convs=2)
    assert m.neck.fpn_convs[0].conv.out_channels == 32 and len(m.bbox_head.cls_convs) == 2
    assert m.bbox_head.cls_convs[1].conv.out_channels == 24 and m.bbox_head.retina_cls.in_channels == 24
    p = presets.get(TINY, "detection")
    apply_overrides(p, ["model.fpn_channels=48", "train.milestones=[2,3]"])
    assert p.model.fpn_channels == 48 and p.train.milestones == (2, 3)
    with pytest.raises(SetrError):
        presets.get("retinanet_nope", "detection")
    # RetinaNet-HLG's recipe: the norms without weight decay (mmcv custom key 'norm', decay_mult 0)
    groups = {g["name"]: g for g in param_groups(m, 1e-4, 0.05, no_decay_key="norm")}
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["backbone"]["weight_decay"] == 0.05
    assert all(p.ndim == 1 for p in groups["backbone_no_decay"]["params"])
    assert all(g["lr"] == 1e-4 for g in groups.values())


def test_step_warmup_schedule():
    from setr.engine.schedule import step_warmup_lr

    def f(it, epoch):
        return step_warmup_lr(1.0, it, epoch, (8, 11), 0.1, 500, 0.001)

    assert f(0, 0) == pytest.approx(0.001)
    assert f(250, 0) == pytest.approx(1 - 0.5 * 0.999)
    assert f(500, 0) == 1.0 and f(799, 7) == 1.0 and f(800, 8) == pytest.approx(0.1) and f(1100, 11) == pytest.approx(0.01)


# ------------------------------------------------------------------------------------------------- data
def test_dataset_reads_synthetic_coco(coco_root):
    ds = CocoDetection(coco_root, "train", train=True)
    assert ds.num_classes == 2 and ds.cat_ids == [1, 3] and len(ds) == 64
    img, t = ds[0]
    assert img.dtype == torch.float32 and img.shape == (3, 128, 128) and 0 <= img.min() and img.max() <= 1
    ann = ds.coco.imgToAnns[t["image_id"]]
    x, y, w, h = ann[0]["bbox"]
    raw = CocoDetection(coco_root, "train")._targets[t["image_id"]][0]
    assert raw[0].tolist() == [x, y, x + w, y + h]  # xywh -> xyxy
    assert set(t["labels"].tolist()) <= {0, 1}


def test_flip_moves_boxes(coco_root):
    ds = CocoDetection(coco_root, "train", train=True, flip_prob=1.0)
    img, t = ds[0]
    raw = ds._targets[t["image_id"]][0]
    assert torch.allclose(t["boxes"][:, 0], 128 - raw[:, 2]) and torch.allclose(t["boxes"][:, 2], 128 - raw[:, 0])


def _copy_split(root: Path, dst: Path, edit) -> Path:
    import shutil

    shutil.copytree(root, dst)
    ann = dst / "annotations" / "instances_val2017.json"
    data = json.loads(ann.read_text())
    edit(data, dst)
    ann.write_text(json.dumps(data))
    return dst


def test_not_coco_json(coco_root, tmp_path):
    import shutil

    shutil.copytree(coco_root, tmp_path / "d")
    ann = tmp_path / "d" / "annotations" / "instances_val2017.json"
    ann.write_text('{"hello": 1}')
    with pytest.raises(SetrError, match="instances_val2017.json: not a COCO annotation file"):
        CocoDetection(tmp_path / "d", "val")
    ann.write_text("not json at all")
    with pytest.raises(SetrError, match="instances_val2017.json"):
        CocoDetection(tmp_path / "d", "val")


def test_zero_area_boxes_are_counted(coco_root, tmp_path):
    def edit(data, _):
        a = dict(data["annotations"][0])
        extra = [dict(a, id=10_000, bbox=[5.0, 5.0, 0.0, 10.0]),  # zero width
                 dict(a, id=10_001, bbox=[5.0, 5.0, 10.0, 0.0]),  # zero height
                 dict(a, id=10_002, bbox=[200.0, 10.0, 30.0, 30.0])]  # outside the image -> nothing left
        data["annotations"] += extra + [dict(a, id=10_003, bbox=[-10.0, -10.0, 40.0, 40.0])]  # clipped, kept

    root = _copy_split(coco_root, tmp_path / "d", edit)
    with pytest.warns(UserWarning, match="dropped 3 boxes with zero area"):
        ds = CocoDetection(root, "val")
    assert ds.dropped_boxes == 3
    img_id = json.loads((root / "annotations" / "instances_val2017.json").read_text())["annotations"][0]["image_id"]
    boxes = ds._targets[img_id][0]
    assert [0.0, 0.0, 30.0, 30.0] in boxes.tolist()


def test_missing_image_file(coco_root, tmp_path):
    root = _copy_split(coco_root, tmp_path / "d", lambda data, dst: (dst / "val2017" /
                                                                     data["images"][3]["file_name"]).unlink())
    img_id = json.loads((root / "annotations" / "instances_val2017.json").read_text())["images"][3]["id"]
    with pytest.raises(SetrError, match=f"image id {img_id} has no file"):
        CocoDetection(root, "val")


# ---------------------------------------------------------------------------------------------- training
def test_training_reaches_positive_ap(trained, coco_root):
    work, metrics = trained
    assert metrics["AP"] > 0.05, metrics
    assert metrics["AP50"] > metrics["AP"]
    assert set(metrics["per_category"]) == {"rectangle", "ellipse"}
    assert (work / "epoch_8.pth").is_file() and (work / "train.log").is_file()
    assert "epoch 8:" in (work / "train.log").read_text()
    hist = metrics["history"]
    assert hist[-1]["loss_cls"] < hist[0]["loss_cls"]
    results = json.loads((work / "results.bbox.json").read_text())
    assert results and set(results[0]) == {"image_id", "category_id", "bbox", "score"}
    assert {r["category_id"] for r in results} <= {1, 3} and all(len(r["bbox"]) == 4 for r in results)
    assert any((work / "tb").iterdir())  # tensorboard is in the test extra: the scalars are written


def test_exact_resume(coco_root, tmp_path):
    small = write_coco(tmp_path / "small", n_train=8, n_val=2, size=96, num_classes=2, seed=1)

    def preset():
        p = presets.get(TINY, "detection")
        apply_overrides(p, ["train.epochs=2", "train.warmup_iters=3", "train.milestones=[1]",
                            "model.train_min_sizes=[64,96]", "model.max_size=96", "model.test_min_size=96",
                            "model.drop_path_rate=0.1"])  # the RNG matters: drop path, flips, sizes
        return p

    train_detector(preset(), small, tmp_path / "full", progress=False, seed=3)
    train_detector(preset(), small, tmp_path / "part", epochs=1, progress=False, seed=3)
    train_detector(preset(), small, tmp_path / "part", resume=True, progress=False, seed=3)
    a = torch.load(tmp_path / "full" / "epoch_2.pth", weights_only=False)
    b = torch.load(tmp_path / "part" / "epoch_2.pth", weights_only=False)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert a["meta"]["iteration"] == b["meta"]["iteration"] == 4  # the lr is a function of the iteration
    assert [g["lr"] for g in a["optimizer"]["param_groups"]] == [g["lr"] for g in b["optimizer"]["param_groups"]]
    # resuming against a dataset with other categories is refused
    other = write_coco(tmp_path / "other", n_train=8, n_val=2, size=96, num_classes=3, seed=1)
    with pytest.raises(SetrError, match="categories"):
        train_detector(preset(), other, tmp_path / "part", resume=tmp_path / "part" / "epoch_1.pth",
                       epochs=2, progress=False)


def test_evaluate_and_category_mismatch(trained, coco_root, tmp_path):
    work, metrics = trained
    model, _, cats, _ = load_detector_checkpoint(work / "epoch_8.pth", TINY)
    val = CocoDetection(coco_root, "val")
    out = tmp_path / "res.json"
    m = evaluate_detector(model, val, categories=cats, results_json=out)
    assert m["AP"] == pytest.approx(metrics["AP"], abs=1e-6)
    assert json.loads(out.read_text())
    with pytest.raises(SetrError, match="categories"):
        evaluate_detector(model, val, categories=[{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}])


# --------------------------------------------------------------------------------------------------- CLI
def test_cli_test_and_predict(trained, coco_root, tmp_path, capsys):
    work, _ = trained
    ckpt = str(work / "epoch_8.pth")
    assert _cli(["detect", "test", TINY, "-c", ckpt, "--data-root", str(coco_root), "--results", str(tmp_path / "r.json"),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "AP50" in text and "APl" in text and "rectangle" in text and "ellipse" in text
    res = json.loads((tmp_path / "r.json").read_text())
    assert all(set(r) == {"image_id", "category_id", "bbox", "score"} for r in res)

    images = sorted((coco_root / "val2017").glob("*.jpg"))[:2]
    assert _cli(["detect", "predict", TINY, "--checkpoint", ckpt, *map(str, images), "--out",
                 str(tmp_path / "pred"), "--score-thresh", "0.2"]) == 0
    for im in images:
        out = tmp_path / "pred" / f"{im.stem}_boxes.jpg"
        assert out.is_file() and out.stat().st_size > 0
    from PIL import Image

    with Image.open(tmp_path / "pred" / f"{images[0].stem}_boxes.jpg") as im:
        assert im.size == (128, 128) and im.mode == "RGB"

    with pytest.raises(SetrError, match="checkpoint not found"):
        _cli(["detect", "test", TINY, "-c", str(tmp_path / "nope.pth"), "--data-root", str(coco_root)])
    with pytest.raises(SetrError, match="unknown key"):
        _cli(["detect", "predict", TINY, "--checkpoint", ckpt, str(images[0]), "--out", str(tmp_path),
              "--set", "model.bogus=1"])


def test_cli_train_smoke(tmp_path):
    root = write_coco(tmp_path / "d", n_train=4, n_val=2, size=64, num_classes=1, seed=2)
    assert _cli(["detect", "train", TINY, "--data-root", str(root), "--work-dir", str(tmp_path / "w"),
                 "--epochs", "1", "--batch-size", "2", "--no-progress", "--set", "model.train_min_sizes=[64]",
                 "model.test_min_size=64", "model.max_size=64"]) == 0
    assert (tmp_path / "w" / "epoch_1.pth").is_file()
    with pytest.raises(SetrError, match="data root not found"):
        _cli(["detect", "train", TINY, "--data-root", str(tmp_path / "missing")])


@pytest.mark.parametrize("name", [n for n in presets.names("detection") if n != TINY])
def test_every_detection_preset_trains_a_few_iterations(name, tmp_path):
    root = write_coco(tmp_path / "coco", n_train=4, n_val=2, size=96, num_classes=2, seed=1)
    p = presets.get(name, "detection")
    apply_overrides(p, ["model.embed_dims=[16,32,64,128]", "model.num_heads=[1,2,4,8]", "model.depths=[1,1,1,1]",
                        "model.fpn_channels=32", "model.train_min_sizes=[96]", "model.test_min_size=96",
                        "model.max_size=128", "train.epochs=1", "train.batch_size=2", "train.warmup_iters=2",
                        "train.workers=0"])
    metrics = train_detector(p, root, tmp_path / "work", progress=False)
    assert (tmp_path / "work" / "epoch_1.pth").is_file()
    # one epoch need not find anything, but every metric is evaluated (pycocotools says -1 where it had no boxes)
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("AP", "AP50", "AP75")), metrics

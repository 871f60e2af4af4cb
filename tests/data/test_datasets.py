import numpy as np
import pytest
from PIL import Image

from setr.data.datasets import build_dataset
from setr.data.synthetic import WRITERS, write_ade20k, write_cityscapes, write_folder, write_pascal_context
from setr.errors import SetrError


@pytest.mark.parametrize("name", ["folder", "cityscapes", "ade20k", "pascal_context"])
def test_every_layout_loads(tmp_path, name):
    root = WRITERS[name](tmp_path / name, n_train=3, n_val=2)
    if name == "ade20k":
        root = root.parent  # the parent of ADEChallengeData2016 works too
    if name == "pascal_context":
        root = root.parent.parent  # VOCdevkit's parent
    for split, n in (("train", 3), ("val", 2)):
        ds = build_dataset(name, root if name != "pascal_context" else root / "VOCdevkit", split)
        assert len(ds) == n
        item = ds[0]
        assert item["img"].shape[0] == 3 and item["mask"].shape == item["img"].shape[1:]
        labels = set(np.unique(item["mask"].numpy()).tolist())
        assert labels <= set(range(ds.num_classes)) | {255}


def test_ade20k_reduces_zero_label(tmp_path):
    root = write_ade20k(tmp_path, n_train=1, n_val=1)
    raw = np.array(Image.open(next((root / "annotations" / "training").glob("*.png"))))
    ds = build_dataset("ade20k", root, "train")
    mask = ds.load_mask(0)
    assert np.array_equal(mask[raw == 1], np.zeros((raw == 1).sum(), np.uint8))
    raw[0, 0] = 0
    Image.fromarray(raw).save(ds.samples[0].mask)
    assert ds.load_mask(0)[0, 0] == 255


def test_missing_folder_names_layout(tmp_path):
    with pytest.raises(SetrError, match=r"leftImg8bit/train: folder not found \(expected the Cityscapes"):
        build_dataset("cityscapes", tmp_path, "train")
    with pytest.raises(SetrError, match="data root not found"):
        build_dataset("cityscapes", tmp_path / "nothing", "train")


def test_image_without_mask(tmp_path):
    root = write_folder(tmp_path, n_train=2, n_val=1)
    victim = sorted((root / "masks" / "train").glob("*.png"))[0]
    victim.unlink()
    with pytest.raises(SetrError, match=r"train_0000\.png: image has no label map \(expected .*masks/train/train_0000\.png\)"):
        build_dataset("folder", root, "train")


def test_mask_values_outside_class_range(tmp_path):
    root = write_folder(tmp_path, n_train=1, n_val=1, num_classes=3)
    path = root / "masks" / "train" / "train_0000.png"
    mask = np.array(Image.open(path))
    mask[0, :3] = [7, 9, 255]
    Image.fromarray(mask).save(path)
    ds = build_dataset("folder", root, "train")
    with pytest.raises(SetrError, match=r"train_0000\.png: label values 7, 9 are outside the 3 classes"):
        ds[0]


def test_folder_class_file_must_match_model(tmp_path):
    root = write_folder(tmp_path, n_train=1, n_val=1, num_classes=4)
    with pytest.raises(SetrError, match="lists 4 classes, the model has 6"):
        build_dataset("folder", root, "train", num_classes=6)
    (root / "classes.txt").unlink()
    with pytest.raises(SetrError, match="class-names file not found"):
        build_dataset("folder", root, "train")


def test_pascal_context_split_lists_missing_image(tmp_path):
    root = write_pascal_context(tmp_path, n_train=2, n_val=1)
    split = root / "ImageSets" / "SegmentationContext" / "train.txt"
    split.write_text(split.read_text() + "2008_999999\n")
    with pytest.raises(SetrError, match="2008_999999.jpg: listed in train.txt but not found"):
        build_dataset("pascal_context", root, "train")


def test_cityscapes_writer_matches_official_label_tables(tmp_path):
    from cityscapesscripts.helpers.labels import id2label

    root = write_cityscapes(tmp_path, n_train=1, n_val=1)
    train_ids = np.array(Image.open(next(root.rglob("*_labelTrainIds.png"))))
    label_ids = np.array(Image.open(next(root.rglob("*_labelIds.png"))))
    mapped = np.vectorize(lambda i: id2label[int(i)].trainId)(label_ids)
    assert np.array_equal(mapped, train_ids)

import numpy as np
from PIL import Image

from setr.cli import main
from setr.data.classes import PASCAL_CONTEXT_CLASSES
from setr.data.synthetic import write_cityscapes


def test_cityscapes_polygons_to_train_ids_with_cityscapesscripts(tmp_path, capsys):
    root = write_cityscapes(tmp_path, n_train=2, n_val=1, size=(48, 96))
    originals = {p: np.array(Image.open(p)) for p in root.rglob("*_labelTrainIds.png")}
    for p in originals:
        p.unlink()
    assert main(["convert", "cityscapes", str(root)]) == 0
    assert "wrote 3 label maps" in capsys.readouterr().out
    for p, want in originals.items():
        got = np.array(Image.open(p))
        # drawn from polygons by cityscapesscripts: identical up to antialiasing-free edge pixels
        assert (got == want).mean() > 0.97
    assert len((root / "train.txt").read_text().split()) == 2
    assert (root / "val.txt").read_text().strip().startswith("aachen/aachen_")


def test_pascal_context_from_the_official_mat_release(tmp_path):
    from scipy.io import savemat

    devkit = tmp_path / "VOCdevkit" / "VOC2010"
    (devkit / "JPEGImages").mkdir(parents=True)
    release = tmp_path / "context"
    (release / "trainval").mkdir(parents=True)
    # a 459-class labels.txt in which the 59 SETR classes sit among others
    names = ["accordion"] + list(PASCAL_CONTEXT_CLASSES[1:]) + ["zebra"]
    (release / "labels.txt").write_text("\n".join(f"{i + 1}: {n}" for i, n in enumerate(names)))
    label_map = np.array([[1, 2, 3], [len(names), 60, 2]], dtype=np.uint16)  # accordion, aeroplane, bag / zebra, wood
    savemat(release / "trainval" / "2008_000001.mat", {"LabelMap": label_map})
    savemat(release / "trainval" / "2008_000002.mat", {"LabelMap": label_map})
    (release / "train.txt").write_text("2008_000001\n")
    (release / "val.txt").write_text("2008_000002\n")
    assert main(["convert", "pascal_context", str(tmp_path / "VOCdevkit"), "--context-dir", str(release)]) == 0
    mask = np.array(Image.open(devkit / "SegmentationClassContext" / "2008_000001.png"))
    wood = PASCAL_CONTEXT_CLASSES.index("wood")
    assert mask.tolist() == [[0, 1, 2], [0, wood, 1]]
    assert (devkit / "ImageSets" / "SegmentationContext" / "val.txt").read_text().strip() == "2008_000002"


def test_convert_errors(tmp_path, capsys):
    assert main(["convert", "cityscapes", str(tmp_path)]) == 1
    assert "gtFine: folder not found" in capsys.readouterr().err
    assert main(["convert", "pascal_context", str(tmp_path)]) == 1
    assert "needs --context-dir" in capsys.readouterr().err

"""What the original configs say about each dataset: classes, crop, sliding-window stride, test scale, MS rule."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int
    crop_size: tuple[int, int]  # training crop (= the model's img_size)
    stride: tuple[int, int]  # sliding-window stride at test time
    img_scale: tuple[int, int]  # (long, short) of the resize step
    test_resize: str = "keep_ratio"  # "keep_ratio": fit inside img_scale; "short_side": short side = img_scale[1]
    reduce_zero_label: bool = False
    ratio_range: tuple[float, float] = (0.5, 2.0)  # training random resize
    ms_ratios: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # the _MS test configs
    layout: str = ""
    extra: dict = field(default_factory=dict)


CITYSCAPES = DatasetSpec("cityscapes", 19, (768, 768), (512, 512), (2049, 1025),
                         layout="leftImg8bit/{train,val}/<city>/*_leftImg8bit.png + gtFine/.../*_gtFine_labelTrainIds.png")
ADE20K = DatasetSpec("ade20k", 150, (512, 512), (341, 341), (2048, 512), reduce_zero_label=True,
                     layout="ADEChallengeData2016/{images,annotations}/{training,validation}")
# REF-BUG: the original single-scale Pascal Context test config does not build at HEAD; its intent (and the
# pre-May-2021 code) is "short side 520, keep the aspect ratio", which is what we do.
PASCAL_CONTEXT = DatasetSpec("pascal_context", 60, (480, 480), (320, 320), (520, 520), test_resize="short_side",
                             layout="VOC2010/{JPEGImages,SegmentationClassContext,ImageSets/SegmentationContext}")

DATASETS = {d.name: d for d in (CITYSCAPES, ADE20K, PASCAL_CONTEXT)}

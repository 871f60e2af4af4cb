"""ONNX export of whole-mode logits.

The exported graph is ``image (B, 3, H, W) normalised -> logits (B, K, H, W)`` at the export size; with
``dynamic=True`` the batch size is free (export again for another image size: the position embedding is resampled
for the export size and folded into the graph). Slide inference is a loop over windows around
this graph: run it per crop-sized window on the original grid (``setr.models.segmentor.slide_windows``) and
average the logits, as ``EncoderDecoder.slide_inference`` does.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .errors import SetrError


class _WholeLogits(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.model.encode_decode(img)


def export_onnx(model: nn.Module, path: str | Path, shape: tuple[int, int], dynamic: bool = False,
                opset: int = 18) -> Path:
    path = Path(path)
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            raise SetrError(f"ONNX export needs the {module} package: pip install 'setr[export]'") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    x = torch.randn(2 if dynamic else 1, 3, *shape)  # batch 2: a size-1 example would be specialised
    kwargs = {}
    if dynamic:
        kwargs["dynamic_shapes"] = {"img": {0: torch.export.Dim("batch", min=1, max=64)}}
    try:
        program = torch.onnx.export(_WholeLogits(model).eval(), (x,), dynamo=True, input_names=["img"],
                                    output_names=["logits"], opset_version=opset, external_data=False, **kwargs)
        program.save(str(path))
    except Exception as exc:  # noqa: BLE001 - exporter failures carry long traces
        raise SetrError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return path


def check_onnx(model: nn.Module, path: str | Path, shape: tuple[int, int], batch: int = 1) -> float:
    """Max abs difference between onnxruntime and PyTorch on a random input."""
    import numpy as np
    import onnxruntime as ort

    x = torch.randn(batch, 3, *shape)
    with torch.no_grad():
        want = model.eval().encode_decode(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    return float(np.abs(got - want).max())

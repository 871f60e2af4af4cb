"""Issue 21: labels without the probability map (streamed, in place), static int8 (linear and convolution
layers), --compile accepted by every command. Correctness only: speed is measured in benchmarks/."""
import numpy as np
import pytest
import torch

import setr.inference as inference
from setr.config import build_model
from setr.inference import Segmenter, accumulate_probs, streamed_labels
from setr.presets import get as get_preset

DEMO = "setr_demo_pup_tiny_64x64_shapes"


def demo_model(seed=0):
    torch.manual_seed(seed)
    cfg = get_preset(DEMO).model
    model = build_model(cfg, with_aux=False).eval()
    with torch.no_grad():  # BN statistics away from the identity; larger logits, so classes differ
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.05, 0.2)
    return model, cfg


def test_streamed_labels_equal_argmax_of_full_softmax(monkeypatch):
    monkeypatch.setattr(inference, "BAND_ELEMENTS", 3 * 5 * 17 * 64)  # bands of 64 rows, the last one shorter
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 150, 17, generator=g) * 4
    logits[0, 2, :3] = logits[0, 1, :3]  # exact ties: the first class wins, as in the full argmax
    want = torch.softmax(logits, dim=1).argmax(1).numpy()
    got = streamed_labels(logits, np.uint8)
    assert got.dtype == np.uint8 and got.shape == (3, 150, 17)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(streamed_labels(logits, np.int32, softmax=False), logits.argmax(1).numpy())


@pytest.mark.parametrize("flip", [None, "horizontal", "vertical"])
def test_probabilities_accumulate_in_place_as_the_full_sum(flip, monkeypatch):
    monkeypatch.setattr(inference, "BAND_ELEMENTS", 2 * 4 * 12 * 16)  # bands of 16 rows
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 4, 37, 12, generator=g), torch.randn(2, 4, 37, 12, generator=g)
    dims = {None: (), "horizontal": (3,), "vertical": (2,)}[flip]
    want = torch.softmax(a, 1) + torch.softmax(b, 1).flip(dims=dims)
    total = accumulate_probs(None, a, None)
    assert torch.equal(total, torch.softmax(a, 1))
    assert accumulate_probs(total, b, flip) is total  # in place
    assert torch.equal(total, want)


@pytest.mark.parametrize("mode, aug", [("whole", False), ("slide", False), ("slide", True)])
def test_labels_only_equal_the_labels_of_the_probabilities(mode, aug, monkeypatch):
    monkeypatch.setattr(inference, "BAND_ELEMENTS", 4 * 64 * 5)  # several bands per map
    model, cfg = demo_model()
    cfg.test.crop_size, cfg.test.stride = (48, 48), (32, 32)
    cfg.test.flip_directions = ("horizontal", "vertical")
    cfg.test.aug_ratios = (0.75, 1.25)  # two scales x (2 unflipped + 2 flipped views)
    seg = Segmenter(model, cfg, mode=mode, aug=aug, precision="fp32")
    image = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    full = seg.segment(image)
    assert full.probs.shape == (cfg.num_classes, 70, 90)
    want = full.probs.argmax(0).numpy()
    assert len(np.unique(want)) > 1
    np.testing.assert_array_equal(full.labels, want)
    np.testing.assert_array_equal(seg.predict(image), want)
    only = seg.segment_batch([image, image[::-1].copy()], probs=False)
    assert only[0].probs is None
    np.testing.assert_array_equal(only[0].labels, want)
    np.testing.assert_array_equal(seg.predict_batch([image[::-1].copy()])[0], only[1].labels)


def test_static_int8_agrees_with_fp32_on_confident_pixels():
    pytest.importorskip("torchao")
    from setr.precision import StaticInt8

    model, cfg = demo_model()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        want = model.encode_decode(x)
    int8 = StaticInt8(model, compile=False)  # the converted graph run eagerly: the same int8 arithmetic
    with torch.inference_mode():
        got = int8(x)
    graph_ops = {str(n.target) for n in int8.graphs[(tuple(x.shape), x.dtype)].graph.nodes if n.op == "call_function"}
    quantized = [op for op in graph_ops if "quantize_per" in op]
    assert quantized, graph_ops  # activations quantized: the layers run on int8 values
    assert int8.graphs[(tuple(x.shape), x.dtype)] is not None and (1, 3, 64, 64) in int8.first_call_s
    assert not torch.equal(got, want)  # it did quantize
    top2 = torch.softmax(want, 1).topk(2, dim=1).values
    confident = (top2[:, 0] - top2[:, 1]) > 0.02
    agree = (got.argmax(1) == want.argmax(1))[confident].float().mean()
    assert confident.float().mean() > 0.5 and agree >= 0.995, (float(agree), float(confident.float().mean()))


def test_int8_static_is_cpu_inference_only():
    from setr.errors import SetrError
    from setr.precision import resolve_precision

    assert resolve_precision("int8-static", "cpu") == "int8-static"
    with pytest.raises(SetrError, match="int8-static is for CPU inference"):
        resolve_precision("int8-static", "cuda")


# ------------------------------------------------------------------------------------------- --compile
TINY = ["model.backbone.embed_dim=32", "model.backbone.num_heads=2", "model.backbone.depth=2",
        "model.decode_head.in_index=1", "model.decode_head.channels=16", "model.aux_heads.0.in_index=0",
        "model.aux_heads.0.channels=16", "train.batch_size=2", "data.workers=0"]


def tiny_demo():
    from setr.overrides import apply_overrides

    return apply_overrides(get_preset(DEMO), TINY)


def test_compile_option_reaches_torch_compile_in_every_command(tmp_path, monkeypatch, capsys):
    """predict, test, benchmark and train take --compile and compile the network with it (torch.compile
    recorded here, not run: the real compilation is the next test's)."""
    from setr.cli import main
    from setr.data.synthetic import write_folder
    from setr.model_files import save_model

    compiled = []

    def record(fn, *args, **kwargs):
        compiled.append(fn)
        return fn

    monkeypatch.setattr(torch, "compile", record)
    cfg = tiny_demo().model
    ckpt = save_model(build_model(cfg), cfg, tmp_path / "tiny.safetensors")
    data = write_folder(tmp_path / "data", n_train=2, n_val=1, size=(64, 64), seed=0)
    image = next((data / "images" / "val").iterdir())
    runs = {
        "predict": ["predict", DEMO, str(image), "-c", str(ckpt), "--out", str(tmp_path / "p"), "--no-progress"],
        "test": ["test", DEMO, str(ckpt), "--data-root", str(data)],
        "benchmark": ["benchmark", DEMO, "--runs", "1", "--precision", "fp32", "--set", *TINY],
        "train": ["train", DEMO, "--data-root", str(data), "--work-dir", str(tmp_path / "w"), "--iters", "1",
                  "--no-progress", "--no-validate", "--set", *TINY],
    }
    for name, argv in runs.items():
        compiled.clear()
        assert main(argv) == 0, name
        assert compiled == [], name  # without --compile nothing is compiled
        assert main(argv + ["--compile"] + (["--overwrite"] if name == "train" else [])) == 0, name
        assert len(compiled) == 1, name
    assert "first call" in capsys.readouterr().out  # benchmark reports the compiling first call apart


def test_compiled_prediction_equals_eager():
    """One real torch.compile (Inductor, CPU): a tiny model's labels equal the eager ones."""
    cfg = tiny_demo().model
    model = build_model(cfg, with_aux=False).eval()
    image = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    eager = Segmenter(model, cfg, mode="whole", precision="fp32").segment(image)
    compiled = Segmenter(model, cfg, mode="whole", precision="fp32", compile=True)
    assert compiled.model.encode_decode is not type(compiled.model).encode_decode
    got = compiled.segment(image)
    torch.testing.assert_close(got.probs, eager.probs, atol=1e-5, rtol=1e-5)
    assert (got.labels == eager.labels).mean() > 0.999

"""Numeric precision of inference and training: the fastest honest mode for the device, or exact fp32.

``auto`` picks bf16 autocast where the hardware has bf16 matrix units (CUDA GPUs of compute capability >= 8,
CPUs with AVX512-BF16 or AMX), else fp32. Under bf16 autocast, matmuls and convolutions run in bf16 while
softmax, LayerNorm and the loss stay in fp32 (PyTorch's autocast lists); ``fp32`` is the original's arithmetic up
to float rounding (summation order, and for inference each head BatchNorm folded into its convolution: ~1e-7 on
the logits). ``int8`` (CPU inference only, never picked by ``auto``): the encoder's linear layers and the head's
convolutions that read ReLU outputs run as dynamic int8 (weights int8 per output channel, activations quantized
per call over their own range), the rest as under ``auto``. ``int8-static`` (CPU inference only, never picked by
``auto``): static int8 for the linear AND convolution layers (PyTorch 2 export quantization with the x86 Inductor
quantizer, from ``torchao``), calibrated on the first input of each shape the network sees, then compiled by
Inductor into fused int8 kernels (``StaticInt8``); the first call of each shape takes minutes. ``auto`` picks
neither int8 path: it is the fastest *exact-enough* path per machine kind as measured (benchmarks/RESULTS.md,
README's speed table): bf16 where the CPU or GPU has bf16 units, fp32 on AVX2-only CPUs (bf16 there is emulated:
slower than fp32). ``prepare_for_inference`` applies what a precision needs to a model (channels-last head
convolutions with their BatchNorm folded in, the attention kernel of the device, int8 layers);
``benchmarks/cpu_fast_paths.py`` and ``benchmarks/peers/`` measure the choices, ``benchmarks/fast_path_agreement.py``
their argmax agreement with fp32.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

from .errors import SetrError

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8", "int8-static")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def has_fast_bf16(device: torch.device | str) -> bool:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)
    return False


def resolve_precision(requested: str | None, device: torch.device | str) -> str:
    requested = requested or "auto"
    if requested not in PRECISIONS:
        raise SetrError(f"--precision {requested}: expected one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        return "bf16" if has_fast_bf16(device) else "fp32"
    if requested == "fp16" and torch.device(device).type == "cpu":
        raise SetrError("--precision fp16 is for GPUs; use bf16 or fp32 on the CPU")
    if requested in ("int8", "int8-static") and torch.device(device).type != "cpu":
        raise SetrError(f"--precision {requested} is for CPU inference; use bf16 or fp16 on a GPU")
    return requested


def autocast(precision: str, device: torch.device | str):
    """The autocast context for a resolved precision (a no-op for fp32; int8 layers take fp32 inputs and the rest
    of an int8 model runs under bf16 autocast where the CPU has bf16 units)."""
    if precision == "int8":
        precision = "bf16" if has_fast_bf16(device) else "fp32"
    if precision in ("fp32", "int8-static"):  # static int8: the quantized graph takes and gives fp32
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=DTYPES[precision])


ONE_WINDOW_AT_A_TIME = ("fp32", "int8", "int8-static")


def default_window_batch(precision: str) -> int:
    """Sliding windows per forward by default: one for fp32 (the original's order of operations) and the CPU
    int8 paths (one window's activations held at a time: a window's matrices already fill a CPU), eight for
    bf16 / fp16 (GPUs and bf16 CPUs, where the batch was measured faster)."""
    return 1 if precision in ONE_WINDOW_AT_A_TIME else 8


def attention_kernel(device: torch.device | str, precision: str) -> str:
    """The attention kernel for inference on ``device`` at ``precision`` (see ``setr.models.vit.SetrAttention``).

    ``sdpa`` everywhere, as measured (``benchmarks/cpu_fast_paths.py``, benchmarks/RESULTS.md): on CPUs with AMX
    and with AVX512-BF16 only, PyTorch's CPU flash kernel beat the bf16 matmul path and the chunked one at every
    SETR size measured (ViT-B and ViT-L, 1025 and 2305 tokens); on CUDA, sdpa picks the flash or memory-efficient
    kernel itself. The other kernels stay selectable (``set_attention_kernel``) for the measurement."""
    return "sdpa"


def _int8_input_to_fp32(module, args):
    x = args[0]
    return (x.float(),) + tuple(args[1:]) if x.dtype != torch.float32 else None


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 ``nn.Linear`` layers (PyTorch's eager dynamic quantization, per-channel weights) for CPU
    inference; their inputs are cast to fp32 (the quantized kernels take fp32), their outputs are fp32."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao eager quantization is deprecated in favour of torchao
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        model = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                                 inplace=False)
        from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    for m in model.modules():
        if isinstance(m, DynamicInt8Linear):
            m.register_forward_pre_hook(_int8_input_to_fp32)
    return model


def precast_matmul_weights(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Store the weights and biases of a SETR ViT model's ``nn.Linear`` and ``nn.Conv2d`` layers in the autocast
    dtype once, instead of autocast casting all of them again on every forward (about a fifth of the CPU bf16
    forward was those casts). The arithmetic is unchanged, bit for bit: under autocast these layers cast weight,
    bias and input to ``dtype`` anyway. The model must then run under autocast. (HLG models are left as they are:
    one of their position MLPs follows its weights' dtype.)"""
    from .models.vit import SetrViT

    if not isinstance(getattr(model, "backbone", None), SetrViT):
        return model
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m.weight.dtype != dtype:
            # the full-precision tensors stay what state_dict() returns (saving a prepared model stays exact)
            m._setr_full_precision = {n: p for n, p in m.named_parameters(recurse=False)}
            for n, p in m._setr_full_precision.items():
                setattr(m, n, torch.nn.Parameter(p.detach().to(dtype), requires_grad=False))
            m._register_state_dict_hook(_full_precision_state)
    return model


def _full_precision_state(module, state_dict, prefix, local_metadata):
    for n, p in module._setr_full_precision.items():
        if prefix + n in state_dict:
            state_dict[prefix + n] = p.detach()


def conv_bn_pairs(module: torch.nn.Module) -> list[tuple[torch.nn.Module, str, str]]:
    """(parent, conv name, BatchNorm name) of every convolution whose output goes straight into a BatchNorm in
    the SETR / HLG heads: ``conv_i`` -> ``syncbn_fc_i`` children, and neighbours in a ``ConvBNSequential``."""
    from .models.heads.common import ConvBNSequential

    pairs = []
    for parent in module.modules():
        children = dict(parent.named_children())
        names = list(children)
        if isinstance(parent, ConvBNSequential):
            candidates = zip(names, names[1:])
        else:
            candidates = ((n, "syncbn_fc_" + n[len("conv_"):]) for n in names if n.startswith("conv_"))
        pairs += [(parent, c, b) for c, b in candidates
                  if isinstance(children.get(c), torch.nn.Conv2d) and isinstance(children.get(b), torch.nn.BatchNorm2d)]
    return pairs


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Inference: every head convolution followed by a BatchNorm runs as one convolution with the BatchNorm folded
    into its weight and bias (see ``setr.models.heads.common.conv_bn``: eval mode only, recomputed when a weight
    changes, the parameters and ``state_dict`` untouched). The same function up to float rounding (~1e-7)."""
    from .models.heads.common import FOLD_FLAG

    for parent, conv_name, _ in conv_bn_pairs(model):
        setattr(getattr(parent, conv_name), FOLD_FLAG, True)
    return model


class DynamicInt8Conv2d(torch.nn.Module):
    """A convolution (BatchNorm already folded in) as dynamic int8 on the CPU: weights int8 per output channel,
    the input quantized per call to 7-bit codes over its own [0, max] (per tensor), int32 accumulation, fp32 output
    (oneDNN's quantized convolution, the kernel Inductor's x86 int8 path calls). Dynamic like the int8 linear
    layers: nothing is calibrated, each image's result depends on that image alone. For inputs >= 0 only (what
    follows a ReLU): oneDNN pads the quantized input with the integer 0, which stands for 0.0 only when the zero
    point is 0; an input with negative values runs the fp32 convolution instead (tested: padded borders were 10%
    off otherwise)."""

    def __init__(self, conv: torch.nn.Conv2d):
        super().__init__()
        weight = conv.weight.detach().float()
        # plain attributes, not buffers: oneDNN's packed weight is an opaque CPU tensor (no state_dict, no .to())
        self.w_scale = weight.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / 127
        self.w_zero_point = torch.zeros(weight.shape[0], dtype=torch.int64)
        self.bias = None if conv.bias is None else conv.bias.detach().float().clone()
        q = torch.clamp(torch.round(weight / self.w_scale[:, None, None, None]), -128, 127).to(torch.int8)
        self.conv_args = (list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups)
        self.packed_weight = torch.ops.onednn.qconv_prepack(
            q.contiguous(memory_format=torch.channels_last), self.w_scale, 1.0, 0, *self.conv_args, None)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.fp32_weight, self.fp32_bias = weight, self.bias  # for inputs with negative values

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.conv_args[0]}, padding={self.conv_args[1]}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import warnings

        x = x.float().contiguous(memory_format=torch.channels_last)
        if float(x.amin()) < 0:
            stride, padding, dilation, groups = self.conv_args
            return torch.nn.functional.conv2d(x, self.fp32_weight, self.fp32_bias, stride, padding, dilation, groups)
        # 7-bit codes over [0, max], zero point 0: without VNNI, x86 int8 kernels add u8 x s8 products in pairs
        # into int16, which 8-bit codes can overflow (measured: 5% errors on AVX2); PyTorch's own dynamic int8
        # linear layers reduce the range the same way
        scale = max(float(x.amax()) / 127.0, 1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized tensor factories: deprecated, still the fast kernel
            xq = torch.quantize_per_tensor(x, scale, 0, torch.quint8).int_repr()
        return torch.ops.onednn.qconv2d_pointwise(xq, scale, 0, self.packed_weight, self.w_scale,
                                                  self.w_zero_point, self.bias, *self.conv_args, 1.0, 0,
                                                  torch.float32, "none", [], "")


def has_int8_dot_product() -> bool:
    """Whether the CPU has int8 dot-product instructions (VNNI or AMX-INT8), read from /proc/cpuinfo (False where
    it cannot tell: the 7-bit activations that then get used are correct on every CPU)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def has_int8_convolution() -> bool:
    """Whether this PyTorch build has oneDNN's quantized convolution (x86 CPU builds)."""
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qconv2d_pointwise")
    except (AttributeError, RuntimeError):
        return False


def _int8_or_fp32(conv: torch.nn.Conv2d) -> torch.nn.Module:
    """:class:`DynamicInt8Conv2d` of ``conv``, or ``conv`` itself where this build's oneDNN cannot pack it."""
    try:
        return DynamicInt8Conv2d(conv)
    except RuntimeError:
        return conv


def quantize_head_convolutions(model: torch.nn.Module) -> torch.nn.Module:
    """In an int8 copy of the model: every decode-head convolution followed by a BatchNorm gets the BatchNorm
    folded in and, where the build has oneDNN's quantized convolution, runs as :class:`DynamicInt8Conv2d`, but
    for the head's first (``conv_0``); the classifier convolutions (not followed by a BatchNorm) stay fp32, so
    the logits come from fp32 weights."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    head = getattr(model, "decode_head", model)
    int8 = has_int8_convolution()
    for parent, conv_name, bn_name in conv_bn_pairs(head):
        fused = fuse_conv_bn_eval(getattr(parent, conv_name).eval(), getattr(parent, bn_name).eval())
        # a head's first convolution (``conv_0``) reads the encoder's signed, outlier-heavy features: it stays
        # fp32 (a few % of the head's work at SETR sizes); the later ones read ReLU outputs, which int8 keeps well
        setattr(parent, conv_name, _int8_or_fp32(fused) if int8 and conv_name != "conv_0" else fused)
        setattr(parent, bn_name, torch.nn.Identity())
    return model


def prepare_for_inference(model: torch.nn.Module, precision: str, device: torch.device | str,
                          fold: bool = True) -> torch.nn.Module:
    """The model as ``precision`` runs it on ``device`` (eval mode). Every precision: the head convolutions
    channels-last. fp32: the original's arithmetic with each head BatchNorm folded into its convolution
    (:func:`fold_batchnorm`, ~1e-7 on the logits; ``fold=False`` leaves them, for ``torch.compile``, which
    fuses itself). Other precisions: the whole model channels-last, the device's attention kernel and the matmul
    weights stored in the autocast dtype; int8 quantizes the encoder's linear layers and the head's
    convolutions that precede a BatchNorm (dynamic int8, :func:`quantize_head_convolutions`). Returns the
    (possibly new) model, to be run under ``autocast(precision, device)``."""
    from .models.vit import set_attention_kernel

    model = model.eval()
    if precision == "int8-static":
        model.encode_decode = StaticInt8(model)
        return model
    head = getattr(model, "decode_head", None)
    if head is not None:
        head.to(memory_format=torch.channels_last)  # the head's convolutions: measured faster channels-last
    if precision == "fp32":
        return fold_batchnorm(model) if fold else model
    model = model.to(memory_format=torch.channels_last)
    set_attention_kernel(model, attention_kernel(device, precision))
    if precision == "int8":
        model = quantize_int8(model)  # a copy: the caller's model keeps its layers
        quantize_head_convolutions(model)
        if has_fast_bf16(device):
            precast_matmul_weights(model, torch.bfloat16)  # the convolutions left in float
    else:  # (no folding here: the precast weights reproduce plain autocast bit for bit)
        precast_matmul_weights(model, DTYPES[precision])
    return model


class StaticInt8:
    """A model's ``encode_decode`` as static int8 (linear and convolution layers, activations and weights int8,
    per-channel weights): for each input shape, the fp32 network is exported (``torch.export``), observed on
    that first input (the calibration: PT2E's histogram-free min/max observers, x86 Inductor quantizer's default
    config), converted, and compiled by Inductor into fused int8 kernels (``compile=False``: the converted graph
    runs eagerly with quantize/dequantize ops, the same arithmetic, slowly: for tests). Needs ``torchao``
    (``pip install 'setr[int8]'``). The first call of each shape is slow (export, calibration, compilation);
    ``first_call_s`` records those times, by shape."""

    def __init__(self, model: torch.nn.Module, compile: bool = True):
        try:
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: F401
        except ImportError:
            raise SetrError("--precision int8-static needs torchao (pip install 'setr[int8]')") from None
        self.model, self.compile = model, compile
        self.graphs: dict[tuple, object] = {}
        self.first_call_s: dict[tuple, float] = {}
        self._forward = type(model).encode_decode.__get__(model)  # the fp32 function, not this wrapper

    def _build(self, x: torch.Tensor):
        import time
        import warnings

        from torchao.quantization.pt2e import move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

        start = time.perf_counter()
        forward = self._forward

        class EncodeDecode(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, img):
                return forward(img)

        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            x = x.detach().clone()  # inference-mode tensors cannot be traced
            graph = torch.export.export(EncodeDecode(self.model).eval(), (x,)).module()
            quantizer = xiq.X86InductorQuantizer()
            # without VNNI the int8 kernels' int16 pair sums overflow on 8-bit activations (torchao's advice)
            quantizer.set_global(xiq.get_default_x86_inductor_quantization_config(
                reduce_range=not has_int8_dot_product()))
            graph = prepare_pt2e(graph, quantizer)
            graph(x)  # calibration: the observers see this input
            graph = convert_pt2e(graph)
            move_exported_model_to_eval(graph)
            if self.compile:
                graph = torch.compile(graph)
                graph(x)  # compiled now, not inside the caller's timing of its first result
        self.first_call_s[tuple(x.shape)] = time.perf_counter() - start
        return graph

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype)
        if key not in self.graphs:
            self.graphs[key] = self._build(x)
        with torch.inference_mode(False), torch.no_grad():
            return self.graphs[key](x.detach().clone() if x.is_inference() else x)

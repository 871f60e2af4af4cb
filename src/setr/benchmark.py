"""``setr benchmark``: latency, throughput, peak memory and achieved TFLOP/s of a preset's forward (or training
step), next to a matrix-multiply peak measured on the spot on the same device and dtype.

Speed is measured here and in ``benchmarks/``, never in the tests.
"""
from __future__ import annotations

import os
import statistics
import threading
import time
from contextlib import contextmanager
from typing import Callable

import torch

from .config import build_model
from .precision import (DTYPES, attention_kernel, autocast, default_window_batch, has_fast_bf16, prepare_for_inference,
                        resolve_precision)
from .presets import Preset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux: ``/proc/self/clear_refs`` <- 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int | None:
    """The kernel's peak resident set size of this process (``VmHWM``), or None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@contextmanager
def peak_memory(device: torch.device):
    """Yields a dict whose ``peak_bytes`` is filled on exit: CUDA max allocated above the level at entry, or on
    the CPU the process's peak resident set size (RSS) while inside: weights, activations and the runtime,
    measured by the kernel (its peak mark reset at entry) or, without one, sampled every 2 ms. (The RSS *above
    the level at entry* is no measure on the CPU: the allocator keeps the warm-up's memory, so it reads 0.)"""
    out = {"peak_bytes": 0, "kind": "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss"}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield out
        out["peak_bytes"] = torch.cuda.max_memory_allocated(device) - base
        return
    if _reset_peak_rss():
        try:
            yield out
        finally:
            out["peak_bytes"] = _peak_rss_bytes() or 0
        return
    if not os.path.exists("/proc/self/statm"):  # no /proc (macOS, Windows): the lifetime peak, where known
        yield out
        try:
            import resource
            import sys

            maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            out["peak_bytes"] = maxrss if sys.platform == "darwin" else maxrss * 1024
            out["kind"] = "cpu_peak_rss_since_start"
        except ImportError:
            out["kind"] = "unmeasured"
        return
    base, peak, stop = 0, [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield out
    finally:
        stop.set()
        t.join()
        out["peak_bytes"] = max(peak[0], _rss_bytes()) - base


def matmul_peak_tflops(device: torch.device, precision: str, n: int | None = None, runs: int = 5) -> float:
    """Measured dense matmul throughput for this device and dtype (median of ``runs``). On the CPU the size is
    chosen for about a quarter second per product: a CPU without bf16 units emulates bf16 some 100x slower than
    fp32, where a 2048^3 product would take minutes."""
    dtype = DTYPES.get(precision, torch.float32)
    if n is None:
        n = 8192 if device.type == "cuda" else 2048
        if device.type == "cpu":
            probe = 256
            a = torch.randn(probe, probe, dtype=dtype)
            times = _time(lambda: a @ a, device, warmup=1, runs=1)
            rate = 2 * probe ** 3 / max(times[0], 1e-9)
            n = min(n, max(probe, int((rate * 0.25 / 2) ** (1 / 3))))
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = _time(lambda: a @ b, device, warmup=2, runs=runs)
    return 2 * n ** 3 / statistics.median(times) / 1e12


def _time(fn: Callable[[], object], device: torch.device, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


class _EagerEncodeDecode:
    """``holder[0] = True``: the model's own (eager, fp32 for int8-static) ``encode_decode`` runs instead of the
    compiled or quantized wrapper set on the instance, so that the FLOP counter sees every op."""

    def __init__(self, model):
        self.model, self.wrapper = model, model.__dict__.get("encode_decode")

    def __setitem__(self, i, on: bool) -> None:
        if self.wrapper is None:
            return
        if on:
            del self.model.encode_decode
        else:
            self.model.encode_decode = self.wrapper


def benchmark(preset: Preset, shape: tuple[int, int] | None = None, batch: int = 1, precision: str = "auto",
              compile: bool = False, train: bool = False, mode: str = "whole", device: str | None = None,
              warmup: int = 2, runs: int = 5, window_batch: int | None = None) -> dict:
    from .complexity import counter_result, flop_counter
    from .errors import SetrError

    for name, value in (("--runs", runs), ("--batch", batch), ("--window-batch", window_batch or 1)):
        if value < 1:
            raise SetrError(f"{name} {value}: expected a whole number >= 1")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    prec = resolve_precision(precision, dev)
    cfg = preset.model
    h, w = shape or cfg.backbone.img_size
    torch.manual_seed(0)
    model = build_model(cfg, with_aux=train).to(dev)
    x = torch.randn(batch, 3, h, w, device=dev)
    if train:
        from .engine.losses import segmentor_losses
        from .engine.common import build_optimizer, optimizer_step

        if prec.startswith("int8"):
            raise SetrError(f"--precision {prec} is for inference; train with fp32 or bf16 (--amp)")

        model.train()
        target = torch.randint(0, cfg.num_classes, (batch, h, w), device=dev)
        weights = [cfg.decode_head.loss_weight] + [a.loss_weight for a in cfg.aux_heads]
        # the trainer's step: its optimiser (lr tiny, so the weights stay put over the runs), deferred resizes
        opt = build_optimizer(model, preset.train, lr=1e-6)
        forward = torch.compile(model) if compile else model
        eager = [False]  # FLOPs are counted on the eager network (a compiled graph hides its ops from the counter)
        scaler = torch.amp.GradScaler(dev.type) if prec == "fp16" else None

        def step():
            with autocast(prec, dev):
                outs = (model if eager[0] else forward)(x, with_aux=True, defer=True)
            loss = sum(segmentor_losses(outs, weights, target, preset.train.loss_normalisation).values())
            optimizer_step(loss, opt, model, scaler)  # the loop's step (segmentation: no clipping)
    else:
        # the path `setr predict` takes: channels-last heads, the device's attention kernel, int8 layers
        model = prepare_for_inference(model.eval(), prec, dev, fold=not compile)
        if compile and prec != "int8-static":  # int8-static compiles in its own wrapper
            model.encode_decode = torch.compile(model.encode_decode, dynamic=False)
        wb = window_batch or default_window_batch(prec)
        t = cfg.test

        def step():
            with torch.inference_mode(), autocast(prec, dev):
                model.inference_logits(x, mode, t.crop_size, t.stride, window_batch=wb)

        eager = _EagerEncodeDecode(model)

    start = time.perf_counter()
    step()  # first call (compilation, calibration, allocator warm-up): reported apart, not in the median
    _sync(dev)
    first_call = time.perf_counter() - start
    counter = flop_counter()  # attention counted by formula where PyTorch's counter has none (CPU flash kernel)
    eager[0] = True
    with counter:
        step()
    eager[0] = False
    counted = counter_result(counter)
    flops = counted["flops"]
    with peak_memory(dev) as mem:
        times = _time(step, dev, warmup=max(warmup - 2, 0), runs=runs)
    median = statistics.median(times)
    # int8 runs its linear layers in int8 and the rest as the default path: quoted against that path's peak
    peak_prec = prec if not prec.startswith("int8") else ("bf16" if has_fast_bf16(dev) and prec == "int8" else "fp32")
    peak = matmul_peak_tflops(dev, peak_prec)
    achieved = flops / median / 1e12
    return {
        "preset": preset.name, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "shape": [h, w], "batch": batch, "mode": "train" if train else mode,
        "precision": prec,
        "default_path": prec == resolve_precision("auto", dev) and not compile and not window_batch,
        "attention_kernel": "sdpa" if train or prec == "fp32" else attention_kernel(dev, prec),
        "compile": compile or prec == "int8-static", "first_call_s": first_call, "runs": runs, "median_s": median, "min_s": min(times),
        "images_per_s": batch / median, "peak_memory_mb": mem["peak_bytes"] / 2 ** 20, "memory_kind": mem["kind"],
        "gflops_per_step": flops / 1e9, "attention_gflops_per_step": counted["attention_flops"] / 1e9,
        "achieved_tflops": achieved, "matmul_peak_tflops": peak, "matmul_peak_precision": peak_prec,
        "fraction_of_matmul_peak": achieved / peak if peak else None,
    }


def format_result(r: dict) -> str:
    return (f"{r['preset']} {r['mode']} {r['shape'][0]}x{r['shape'][1]} batch {r['batch']} {r['precision']}"
            f"{' compiled' if r['compile'] else ''}{' (the default path)' if r.get('default_path') else ''}, "
            f"attention {r.get('attention_kernel', 'sdpa')}, on {r['device']} ({r['threads']} threads)\n"
            f"  median {r['median_s'] * 1000:.1f} ms (min {r['min_s'] * 1000:.1f}), {r['images_per_s']:.2f} img/s, "
            f"peak memory {r['peak_memory_mb']:.0f} MB ({r['memory_kind']}); first call {r['first_call_s']:.1f} s"
            f"{' (compilation)' if r['compile'] else ''}\n"
            f"  {r['gflops_per_step']:.1f} GFLOP/step, {r['achieved_tflops']:.3f} TFLOP/s achieved = "
            f"{100 * (r['fraction_of_matmul_peak'] or 0):.0f}% of the {r['matmul_peak_tflops']:.3f} TFLOP/s "
            f"{r.get('matmul_peak_precision', r['precision'])} matmul peak measured now")

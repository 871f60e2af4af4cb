"""Side-by-side: MMSegmentation 1.2.2's SETR and ours on the same weights and input, interleaved in one run.

Every configuration is its own process (``worker.py``; MMSeg's under benchmarks/peers/.venv, ours under the
project's .venv, the same torch build), built once; then the driver asks each in turn for one step
(A B A B ...): ``--warmup`` untimed rounds, ``--runs`` timed rounds, the median reported. Peak memory is each
process's peak resident set size over its timed steps (weights, activations, runtime; the kernel's VmHWM mark,
reset after the warm-up). Before timing, both models' fp32 logits of the same input are compared.

  .venv/bin/python benchmarks/peers/compare.py --group infer          # fp32 and bf16 inference, batch 1
  .venv/bin/python benchmarks/peers/compare.py --group train-fp32     # training step, batch 2, aux heads
  .venv/bin/python benchmarks/peers/compare.py --group train-bf16
Run ``bash benchmarks/peers/setup_mmseg.sh`` once first.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYTHONS = {"ours": ROOT / ".venv" / "bin" / "python", "mmseg": HERE / ".venv" / "bin" / "python"}
GROUPS = {
    "infer": [("ours", "infer", "fp32"), ("mmseg", "infer", "fp32"), ("ours", "infer", "bf16"),
              ("mmseg", "infer", "bf16")],
    "train-fp32": [("ours", "train", "fp32"), ("mmseg", "train", "fp32")],
    "train-bf16": [("ours", "train", "bf16"), ("mmseg", "train", "bf16")],
}


def make_weights(path: Path) -> None:
    """Random SETR-PUP ViT-B weights with non-trivial biases and BN statistics (so the mapping is tested)."""
    sys.path.insert(0, str(ROOT / "src"))
    from setr.config import build_model
    from setr import presets

    torch.manual_seed(0)
    model = build_model(presets.get("SETR_PUP_DeiT_512x512_160k_ade20k_bs_16").model, with_aux=True)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    torch.save(model.state_dict(), path)


class Worker:
    def __init__(self, impl: str, task: str, precision: str, weights: Path, batch: int, threads: int):
        self.name = f"{impl} {task} {precision}"
        self.impl, self.task, self.precision = impl, task, precision
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
        self.proc = subprocess.Popen(
            [str(PYTHONS[impl]), str(HERE / "worker.py"), "--impl", impl, "--task", task, "--precision", precision,
             "--weights", str(weights), "--batch", str(batch), "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"{self.name}: worker failed to start ({line!r})")

    def ask(self, cmd: str) -> str:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        if not line.startswith("ok"):
            raise SystemExit(f"{self.name}: {cmd!r} failed ({line!r})")
        return line[2:].strip()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=60)


def load_average() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group", choices=sorted(GROUPS), required=True)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    missing = [str(p) for p in PYTHONS.values() if not p.exists()]
    if missing:
        raise SystemExit(f"missing {missing}: run `make install` and `bash benchmarks/peers/setup_mmseg.sh` first")
    tmp = Path(tempfile.mkdtemp(prefix="setr_peers_"))
    weights = tmp / "weights.pt"
    make_weights(weights)
    train = args.group.startswith("train")
    batch = 2 if train else 1
    load_before = load_average()
    workers = [Worker(i, t, p, weights, batch, args.threads) for i, t, p in GROUPS[args.group]]
    result = {"group": args.group, "batch": batch, "shape": [512, 512], "threads": args.threads,
              "torch": torch.__version__, "load_average_before": load_before, "checks": {}, "configs": {}}
    try:
        # the same function: fp32 logits of the same input (eval mode), and the fp32 training loss
        fp32 = [w for w in workers if w.precision == "fp32"] or workers
        logits = {}
        for w in fp32:
            w.ask(f"logits {tmp / (w.impl + '.pt')}")
            logits[w.impl] = torch.load(tmp / (w.impl + ".pt"))
        if len(logits) == 2:
            a, b = logits["ours"], logits["mmseg"]
            result["checks"]["logits_max_abs_diff"] = float((a - b).abs().max())
            result["checks"]["logits_max_abs"] = float(a.abs().max())
            result["checks"]["argmax_agreement"] = float((a.argmax(1) == b.argmax(1)).float().mean())
        if train:
            result["checks"]["loss"] = {w.name: float(w.ask("loss")) for w in workers}
        print(json.dumps(result["checks"], indent=1), flush=True)
        times = {w.name: [] for w in workers}
        for _ in range(args.warmup):
            for w in workers:
                w.ask("run")
        for w in workers:
            w.ask("reset_mem")
        for r in range(args.runs):
            for w in workers:
                times[w.name].append(float(w.ask("run")))
            print(f"round {r + 1}/{args.runs}: " + ", ".join(f"{n} {t[-1]:.3f}s" for n, t in times.items()),
                  flush=True)
        for w in workers:
            result["configs"][w.name] = {"median_s": statistics.median(times[w.name]), "times_s": times[w.name],
                                         "peak_rss_mb": int(w.ask("mem")) / 2 ** 20}
    finally:
        for w in workers:
            w.close()
    result["load_average_after"] = load_average()
    print(json.dumps(result, indent=1))
    print(f"\n| {args.group} (batch {batch}, 512x512, {args.threads} threads) | median | peak RSS | MMSeg / ours |")
    print("|---|---|---|---|")
    for prec in ("fp32", "bf16"):
        ours = result["configs"].get(f"ours {'train' if train else 'infer'} {prec}")
        mm = result["configs"].get(f"mmseg {'train' if train else 'infer'} {prec}")
        for name, c in (("MMSeg 1.2.2", mm), ("ours", ours)):
            if c:
                ratio = f"{mm['median_s'] / ours['median_s']:.2f}x" if (ours and mm and name == "ours") else ""
                print(f"| {name} {prec} | {c['median_s']:.3f} s | {c['peak_rss_mb']:.0f} MB | {ratio} |")
    print(f"load average before {load_before}, after {result['load_average_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

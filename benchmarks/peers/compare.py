"""Side by side: the ORIGINAL SETR code, MMSegmentation 1.2.2's SETR and ours on the same weights and input,
interleaved in one run.

Every configuration is its own process (``worker.py``; the original under benchmarks/peers/.original/.venv,
MMSeg's under benchmarks/peers/.venv, ours under the project's .venv, all on the same torch build), built
once; then the driver asks each in turn for one step (A B C A B C ...): ``--warmup`` untimed rounds, ``--runs``
timed rounds, the median reported. The first call of each (compilation for --compile / int8-static) is timed
apart. Peak memory is each process's peak resident set size over its timed steps (weights, activations,
runtime; the kernel's VmHWM mark, reset after the warm-up). Before timing, the fp32 outputs of every code base
on the same input are compared (logits, or the label maps of ``predict``).

Configurations are ``impl:task:precision[:compile]`` with impl original | mmseg | ours, task infer (whole
image) | slide (the preset's crop and stride) | predict (label map of an image: the test pipeline; ``--aug``
for multi-scale + flip) | train (batch, aux heads, loss + backward + SGD step), precision fp32 | bf16 (all),
int8 | int8-static (ours). bf16 rows are left out, with a note, on a CPU without bf16 units (emulated there).

  .venv/bin/python benchmarks/peers/compare.py --configs original:infer:fp32 mmseg:infer:fp32 ours:infer:fp32
  .venv/bin/python benchmarks/peers/compare.py --group infer          # every precision this machine runs fast
Run ``bash benchmarks/peers/setup_mmseg.sh`` and ``bash benchmarks/peers/setup_original.sh SETR MMCV`` first
(their headers say how to clone the two repositories); a missing peer's rows are left out with a note.
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
PYTHONS = {"ours": ROOT / ".venv" / "bin" / "python", "mmseg": HERE / ".venv" / "bin" / "python",
           "original": HERE / ".original" / ".venv" / "bin" / "python"}
IMPLS = ("original", "mmseg", "ours")


def group(task: str, bf16: bool) -> list[str]:
    """Every code base at fp32 (and bf16 where the CPU has bf16 units); ours also compiled and int8."""
    rows = [f"{i}:{task}:fp32" for i in IMPLS]
    if bf16:
        rows += [f"{i}:{task}:bf16" for i in IMPLS]
    rows += [f"ours:{task}:fp32:compile"]
    if task != "train":
        rows += ["ours:infer:int8".replace("infer", task), f"ours:{task}:int8-static"]
    elif bf16:
        rows += ["ours:train:bf16:compile"]
    return rows


def make_weights(path: Path, preset: str) -> None:
    """Random SETR-PUP ViT-B weights with non-trivial biases and BN statistics (so the mapping is tested)."""
    sys.path.insert(0, str(ROOT / "src"))
    from setr.config import build_model
    from setr import presets

    torch.manual_seed(0)
    model = build_model(presets.get(preset).model, with_aux=True)
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
    def __init__(self, spec: str, weights: Path, args):
        impl, task, precision, *extra = spec.split(":")
        self.compile = "compile" in extra
        self.name = f"{impl} {task} {precision}{' compiled' if self.compile else ''}"
        self.impl, self.task, self.precision = impl, task, precision
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore",
                   PYTHONPATH=str(ROOT / "src"))
        cmd = [str(PYTHONS[impl]), str(HERE / "worker.py"), "--impl", impl, "--task", task, "--precision", precision,
               "--weights", str(weights), "--batch", str(args.batch or (2 if task == "train" else 1)),
               "--threads", str(args.threads), "--preset", args.preset]
        cmd += ["--compile"] if self.compile else []
        cmd += ["--size", *map(str, args.size)] if args.size else []
        cmd += ["--aug"] if args.aug else []
        cmd += ["--aug-ratios", *map(str, args.aug_ratios)] if args.aug_ratios else []
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=str(ROOT))
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"{self.name}: worker failed to start ({line!r})")
        self.first_s = None

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
    ap.add_argument("--configs", nargs="+", help="impl:task:precision[:compile] ...")
    ap.add_argument("--group", choices=("infer", "slide", "predict", "train"),
                    help="every code base and path this machine runs for one task")
    ap.add_argument("--preset", default="SETR_PUP_DeiT_512x512_160k_ade20k_bs_16")
    ap.add_argument("--size", type=int, nargs="+", help="H [W] of the input (default: the preset's crop)")
    ap.add_argument("--aug", action="store_true", help="predict: multi-scale + flip")
    ap.add_argument("--aug-ratios", type=float, nargs="+")
    ap.add_argument("--batch", type=int, default=None, help="default: 2 for train, else 1")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--skip-parity", action="store_true", help="no fp32 output comparison (saves one step each)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from setr.precision import has_fast_bf16

    bf16 = has_fast_bf16("cpu")
    notes = []
    specs = list(args.configs or []) + (group(args.group, bf16) if args.group else [])
    if not specs:
        raise SystemExit("give --configs or --group")
    if not bf16 and any(":bf16" in c for c in specs):
        specs = [c for c in specs if ":bf16" not in c]
        notes.append("bf16 rows left out: this CPU has no bf16 units (AVX512-BF16 / AMX); bf16 is emulated here")
    if not bf16 and args.group:
        notes.append("bf16 rows left out: this CPU has no bf16 units (AVX512-BF16 / AMX); bf16 is emulated here")
    for impl in IMPLS:
        if not PYTHONS[impl].exists() and any(c.startswith(impl + ":") for c in specs):
            notes.append(f"{impl} left out: {PYTHONS[impl]} missing (run its setup script)")
            specs = [c for c in specs if not c.startswith(impl + ":")]
    tmp = Path(tempfile.mkdtemp(prefix="setr_peers_"))
    weights = tmp / "weights.pt"
    make_weights(weights, args.preset)
    import platform

    cpu = torch.backends.cpu.get_cpu_capability()
    result = {"configs_requested": specs, "preset": args.preset, "size": args.size, "aug": args.aug,
              "aug_ratios": args.aug_ratios, "threads": args.threads, "torch": torch.__version__,
              "cpu_capability": cpu, "bf16_units": bf16, "machine": platform.processor() or platform.machine(),
              "load_average_before": load_average(), "notes": notes, "checks": {}, "configs": {}}
    workers = []
    try:
        for spec in specs:
            workers.append(Worker(spec, weights, args))
        # the same function: fp32 outputs of the same input (logits, or predict's label maps)
        ref = {}
        for w in workers:
            if w.precision == "fp32" and not w.compile and not args.skip_parity:
                w.ask(f"logits {tmp / (w.impl + '.pt')}")
                ref[w.impl] = torch.load(tmp / (w.impl + ".pt"))
        if "ours" in ref:
            a = ref["ours"]
            for impl, b in ref.items():
                if impl == "ours":
                    continue
                if a.shape != b.shape:
                    result["checks"][f"{impl}_vs_ours"] = f"shapes differ: {list(b.shape)} vs {list(a.shape)}"
                elif workers[0].task == "predict":
                    result["checks"][f"{impl}_vs_ours_labels_equal"] = float((a == b).float().mean())
                else:
                    result["checks"][f"{impl}_vs_ours"] = {
                        "logits_max_abs_diff": float((a - b).abs().max()), "logits_max_abs": float(a.abs().max()),
                        "argmax_agreement": float((a.argmax(1) == b.argmax(1)).float().mean())}
        if workers and workers[0].task == "train":
            result["checks"]["loss"] = {w.name: float(w.ask("loss")) for w in workers if w.precision == "fp32"}
        print(json.dumps(result["checks"], indent=1), flush=True)
        times = {w.name: [] for w in workers}
        for r in range(args.warmup):
            for w in workers:
                t = float(w.ask("run"))
                if r == 0:
                    w.first_s = t
        for w in workers:
            w.ask("reset_mem")
        for r in range(args.runs):
            for w in workers:
                times[w.name].append(float(w.ask("run")))
            print(f"round {r + 1}/{args.runs}: " + ", ".join(f"{n} {t[-1]:.3f}s" for n, t in times.items()),
                  flush=True)
        for w in workers:
            result["configs"][w.name] = {"median_s": statistics.median(times[w.name]), "times_s": times[w.name],
                                         "first_call_s": w.first_s, "peak_rss_mb": int(w.ask("mem")) / 2 ** 20}
    finally:
        for w in workers:
            w.close()
    result["load_average_after"] = load_average()
    print(json.dumps(result, indent=1))
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


def table(result: dict) -> str:
    c = result["configs"]
    orig = next((v for k, v in c.items() if k.startswith("original") and k.endswith("fp32")), None)
    mm = next((v for k, v in c.items() if k.startswith("mmseg") and k.endswith("fp32")), None)
    size = "x".join(map(str, result["size"])) if result["size"] else "crop"
    lines = [f"\n{result['preset']}, {size}{' ms+flip' if result['aug'] else ''}, {result['threads']} thread(s), "
             f"CPU {result['cpu_capability']}{' + bf16 units' if result['bf16_units'] else ' (no bf16 units)'}",
             "| configuration | median | first call | peak RSS | original fp32 / this | MMSeg fp32 / this |",
             "|---|---|---|---|---|---|"]
    for name, v in c.items():
        r1 = f"{orig['median_s'] / v['median_s']:.2f}x" if orig else ""
        r2 = f"{mm['median_s'] / v['median_s']:.2f}x" if mm else ""
        lines.append(f"| {name} | {v['median_s']:.3f} s | {v['first_call_s'] or 0:.1f} s | {v['peak_rss_mb']:.0f} MB "
                     f"| {r1} | {r2} |")
    lines += [f"note: {n}" for n in result["notes"]]
    lines.append(f"load average before {result['load_average_before']}, after {result['load_average_after']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

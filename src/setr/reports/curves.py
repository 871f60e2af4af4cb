"""Training curves from a work dir: each head's loss and the total, the learning rate of every parameter group,
and the validation metrics, over iterations; several runs overlaid.

The loop writes ``metrics.jsonl`` (one record per iteration: ``losses``, ``total_loss``, ``lr``),
``val_metrics.jsonl`` (one record per evaluation during training, written by :func:`append_validation`) and
``metrics.json`` (the run's final metrics). ``setr plot WORK_DIR ...`` draws them; the loop writes
``curves.png`` into the work dir at the end of training.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import SetrError
from . import html as H

VAL_FILE = "val_metrics.jsonl"
# numbers in a metrics record that are not metrics: bookkeeping, counts, the best-so-far record
NOT_METRICS = {"iteration", "iterations", "epoch", "epochs", "num_images", "images", "num_detections", "best",
               "lr", "time", "seconds"}


@dataclass
class Run:
    name: str
    iterations: list[int] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)  # head name -> value per iteration (NaN: none)
    total: list[float] = field(default_factory=list)
    lr: dict[str, list[float]] = field(default_factory=dict)
    val_iterations: list[int] = field(default_factory=list)
    val: dict[str, list[float]] = field(default_factory=dict)
    final: dict = field(default_factory=dict)


def _numeric_leaves(d, prefix: str = "") -> dict[str, float]:
    """``{"model": {"top1": 71.2}, "mIoU": 0.5, "per_class": [...]}`` -> ``{"model/top1": 71.2, "mIoU": 0.5}``."""
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            key = f"{prefix}/{k}" if prefix else str(k)
            if isinstance(v, bool) or k in NOT_METRICS:
                continue
            if isinstance(v, (int, float)):
                if math.isfinite(float(v)):
                    out[key] = float(v)
            elif isinstance(v, dict):
                out.update(_numeric_leaves(v, key))
    return out


def append_validation(work_dir: str | Path, iteration: int, metrics: dict) -> None:
    """Add one evaluation's numeric metrics to ``<work_dir>/val_metrics.jsonl`` (records of this iteration or
    later, left by a run that is being resumed from an earlier checkpoint, are dropped first)."""
    path = Path(work_dir) / VAL_FILE
    values = _numeric_leaves(metrics)
    if not values:
        return
    keep = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                if int(json.loads(line)["iteration"]) < iteration:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                continue
    keep.append(json.dumps({"iteration": int(iteration), **values}))
    path.write_text("".join(f"{line}\n" for line in keep))


def _jsonl(path: Path) -> list[dict]:
    records = []
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # the last line of a run still writing it
                break
            raise SetrError(f"{path}: line {n} is not JSON") from None
        if isinstance(rec, dict) and "iteration" in rec:
            records.append(rec)
    return records


def read_run(work_dir: str | Path, name: str | None = None) -> Run:
    """The curves of one work dir; a folder without ``metrics.jsonl`` is one line naming it."""
    wd = Path(work_dir)
    if not wd.is_dir():
        raise SetrError(f"{wd}: work dir not found")
    path = wd / "metrics.jsonl"
    if not path.is_file():
        raise SetrError(f"{wd}: no metrics.jsonl (written by `setr train` into its work dir)")
    run = Run(name or wd.name)
    by_it = {int(r["iteration"]): r for r in _jsonl(path)}  # a resumed run's records: the last one counts
    for it in sorted(by_it):
        r = by_it[it]
        n = len(run.iterations)
        run.iterations.append(it + 1)  # records count from 0; iteration i + 1 is done when record i is written
        for table, values in ((run.losses, r.get("losses") or {}), (run.lr, r.get("lr") or {})):
            for k, v in values.items():
                table.setdefault(k, [math.nan] * n).append(float(v))
            for k, seq in table.items():
                if len(seq) < n + 1:
                    seq.append(math.nan)
        run.total.append(float(r.get("total_loss", math.nan)))
    val = wd / VAL_FILE
    if val.is_file():
        for r in sorted(_jsonl(val), key=lambda r: r["iteration"]):
            n = len(run.val_iterations)
            run.val_iterations.append(int(r["iteration"]))
            for k, v in r.items():
                if k != "iteration" and isinstance(v, (int, float)):
                    run.val.setdefault(k, [math.nan] * n).append(float(v))
            for seq in run.val.values():
                if len(seq) < n + 1:
                    seq.append(math.nan)
    final = wd / "metrics.json"
    if final.is_file():
        try:
            run.final = json.loads(final.read_text())
        except json.JSONDecodeError:
            run.final = {}
        if not run.val_iterations:  # no evaluation log (an older run): the final metrics as one point
            values = _numeric_leaves(run.final)
            it = (run.final.get("iteration") or run.final.get("iterations")
                  or (run.iterations[-1] if run.iterations else None))
            if values and it is not None:
                run.val_iterations = [int(it)]
                run.val = {k: [v] for k, v in values.items()}
    if not run.iterations:
        raise SetrError(f"{path}: no iteration records yet")
    return run


def _names(runs: Sequence[Run]) -> list[str]:
    """Unique labels: the folder names, with their parents where two are alike."""
    names = [r.name for r in runs]
    return [n if names.count(n) == 1 else f"{n} ({i + 1})" for i, n in enumerate(names)]


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """An exponential moving average (TensorBoard's smoothing), NaN-tolerant; ``weight`` 0 keeps the values."""
    out, last = [], None
    for v in values:
        if not math.isnan(v):
            last = v if last is None else weight * last + (1 - weight) * v
        out.append(math.nan if last is None else last)
    return out


def draw(runs: Sequence[Run], title: str | None = None):
    """One figure: losses (per head and total, log scale), learning rates, validation metrics."""
    val_keys = sorted({k for r in runs for k in r.val})
    panels = ["loss", "lr"] + (["val"] if val_keys else [])
    fig = H.figure(6.0 * len(panels), 4.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    labels = _names(runs)
    many = len(runs) > 1
    from matplotlib import colormaps

    colours = colormaps["tab10"]
    ax = axes[0]
    for i, (run, label) in enumerate(zip(runs, labels)):
        c = colours(i % 10) if many else None
        w = 0.9 if len(run.iterations) >= 100 else 0.0  # long runs: the raw values faint, their average drawn
        if w:
            ax.plot(run.iterations, run.total, color=c or "black", lw=0.6, alpha=0.25)
        ax.plot(run.iterations, smooth(run.total, w), color=c or "black", lw=1.4,
                label=f"{label}: total" if many else "total")
        for j, (head, values) in enumerate(sorted(run.losses.items())):
            if len(run.losses) > 1:
                ax.plot(run.iterations, smooth(values, w), lw=0.9, alpha=0.9, color=c if many else colours(j % 10),
                        ls=("--", ":", "-.")[j % 3] if many else "-", label=f"{label}: {head}" if many else head)
    ax.set_yscale("log")
    smoothed = any(len(r.iterations) >= 100 for r in runs)
    ax.set_title("training loss" + (" (moving average; raw total faint)" if smoothed else ""))
    ax.set_xlabel("iteration")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1]
    for i, (run, label) in enumerate(zip(runs, labels)):
        for j, (group, values) in enumerate(sorted(run.lr.items())):
            ax.plot(run.iterations, values, lw=1.2, color=colours(i % 10) if many else colours(j % 10),
                    ls=("-", "--", ":", "-.")[j % 4] if many else "-", label=f"{label}: {group}" if many else group)
    ax.set_yscale("log")
    ax.set_title("learning rate per parameter group")
    ax.set_xlabel("iteration")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    if val_keys:
        ax = axes[2]
        for i, (run, label) in enumerate(zip(runs, labels)):
            for j, key in enumerate(k for k in val_keys if k in run.val):
                ax.plot(run.val_iterations, run.val[key], marker="o", ms=3, lw=1.2,
                        color=colours(i % 10) if many else colours(j % 10), ls=("-", "--", ":", "-.")[j % 4],
                        label=f"{label}: {key}" if many else key)
        ax.set_title("validation")
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def write_curves_png(runs: Sequence[Run], path: str | Path, title: str | None = None) -> Path:
    from ..io.atomic import atomic_write

    path = Path(path)
    data = H.figure_png(draw(runs, title))
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


def write_curves_page(runs: Sequence[Run], out_dir: str | Path, png_name: str = "curves.png") -> Path:
    """``curves.png`` and ``curves.html`` (the picture embedded, and each run's last values) in ``out_dir``."""
    import base64

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = write_curves_png(runs, out / png_name)
    rows = []
    for run, label in zip(runs, _names(runs)):
        last = {"iterations": run.iterations[-1], "final total loss": f"{run.total[-1]:.4f}"}
        for k, v in run.val.items():
            if v and not math.isnan(v[-1]):
                last[f"last {k}"] = f"{v[-1]:.4f}"
        cells = "".join(f"<li>{H.esc(k)}: {H.esc(v)}</li>" for k, v in last.items())
        rows.append(f'<li class="run"><b>{H.esc(label)}</b><ul>{cells}</ul></li>')
    uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
    sections = [H.img_tag(uri, "training curves", "chart", id="curves"), f'<ul id="runs">{"".join(rows)}</ul>']
    return H.write_page(out, "curves.html", H.page("setr training curves", sections))


def write_work_dir_curves(work_dir: str | Path, log=None) -> Path | None:
    """The loop's end-of-training picture: ``<work_dir>/curves.png``. A picture that cannot be drawn (no
    matplotlib, no records) never fails the finished training: it is one line in the log, and None."""
    wd = Path(work_dir)
    try:
        run = read_run(wd)
        return write_curves_png([run], wd / "curves.png", title=wd.name)
    except ImportError as exc:
        reason = f"needs {(exc.name or 'matplotlib').split('.')[0]}: pip install 'setr[report]'"
    except (SetrError, OSError, ValueError) as exc:
        reason = str(exc)
    if log is not None:
        log.info(f"no curves.png in {wd}: {reason}")
    return None

"""The one training loop, checked the same way for its three tasks (segmentation, classification, detection):
kill -9 in the middle of a checkpoint write and Ctrl-C / SIGTERM resume exactly (one process and torchrun),
exceptions save the last whole iteration, non-finite losses stop every rank together, pruning, bad --resume
paths, another preset or configuration refused, a work dir belongs to one run (lock, --overwrite), stale
temporary files removed, --resume with nothing to resume, train.stop_at and metrics.jsonl."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import setr.engine.loop as loop_module
import train_worker as W
from setr.engine.state import read_checkpoint
from setr.engine.workdir import list_checkpoints
from setr.errors import SetrError

from helpers import free_port

WORKER = str(Path(W.__file__).resolve())
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("loop_data")
    return {t: W.make_data(t, base / t) for t in W.TASKS}


@pytest.fixture(scope="module")
def reference(roots, tmp_path_factory):
    """Each task trained once, uninterrupted, in this process: {task: (work dir, final weights)}."""
    torch.set_num_threads(1)
    out = {}
    for t in W.TASKS:
        work = tmp_path_factory.mktemp(f"ref_{t}")
        W.run(t, roots[t], work)
        out[t] = (work, W.last_weights(work))
    return out


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def newest(work) -> tuple[int, str]:
    found = list_checkpoints(Path(work), 2)
    return (found[-1][0], found[-1][1].name) if found else (0, "")


def worker(spec: dict, env=None, nproc: int = 1, **kwargs):
    args = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
             str(free_port()), WORKER] if nproc > 1 else [sys.executable, WORKER]) + [json.dumps(spec)]
    return subprocess.Popen(args, env={**ENV, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it (torchrun's workers run in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_during_write(spec: dict, names: tuple[str, ...], nproc: int = 1) -> Path:
    """Run ``spec`` with the write of checkpoint ``names`` slowed down; SIGKILL it half-way through that write."""
    work = Path(spec["work"])
    proc = worker(spec, {"SLOW_SAVE": ",".join(names)}, nproc)
    deadline = time.time() + 240
    tmp = []
    while time.time() < deadline and proc.poll() is None:
        tmp = [p for n in names for p in work.glob(f".{n}.*.tmp") if p.stat().st_size > 0]
        if tmp:
            break
        time.sleep(0.05)
    assert tmp, f"the slowed write never started (rc {proc.poll()}): {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
    kill_tree(proc.pid)
    proc.wait(timeout=60)
    proc.stdout.close()
    proc.stderr.close()
    assert tmp[0].exists()  # the interrupted write left its temporary file behind
    return tmp[0]


# the checkpoint written at iteration 4 (epoch-based tasks: the end of epoch 2), and the one before it (iteration 3,
# inside epoch 2 for the epoch-based tasks): a kill during the first leaves the second to resume from
AT_4 = ("iter_4.pth", "epoch_2.pth")


@pytest.mark.parametrize("task", W.TASKS)
def test_kill_9_during_a_checkpoint_write_loses_one_interval(task, roots, reference, tmp_path):
    work = tmp_path / "w"
    tmp = kill_during_write({"task": task, "root": str(roots[task]), "work": str(work)}, AT_4)
    assert newest(work)[0] == 3  # the checkpoint being written is lost, nothing else
    lock = json.loads((work / "train.lock").read_text())  # left by the killed process
    assert lock["pid"] > 0
    # the same command line again, with --resume: stale lock taken over, temporary file removed, exact result
    W.run(task, roots[task], work, resume=True)
    assert not tmp.exists() and not list(work.glob(".*.tmp"))
    assert not (work / "train.lock").exists()
    log = (work / "train.log").read_text()
    assert f"taking over the stale lock of pid {lock['pid']}" in log and "temporary file(s)" in log
    assert "resumed from" in log and "at iteration 3" in log
    assert_same_weights(reference[task][1][1], W.last_weights(work)[1])
    iterations = [json.loads(line)["iteration"] for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert iterations == list(range(W.ITERS))  # the lost iteration's record was rewritten, not duplicated


@pytest.mark.parametrize("task", W.TASKS)
def test_kill_9_under_torchrun_resumes_exactly(task, roots, tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    cli = task == "seg"  # segmentation through `setr train` as typed under torchrun
    proc = worker({"task": task, "root": str(roots[task]), "work": str(ref), "cli": cli}, nproc=2)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "2 process(es)" in (ref / "train.log").read_text()
    kill_during_write({"task": task, "root": str(roots[task]), "work": str(cut), "cli": cli}, AT_4, nproc=2)
    assert newest(cut)[0] == 3
    proc = worker({"task": task, "root": str(roots[task]), "work": str(cut), "resume": True, "cli": cli}, nproc=2)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "taking over the stale lock" in err and not list(cut.glob(".*.tmp"))
    assert_same_weights(W.last_weights(ref)[1], W.last_weights(cut)[1])


@pytest.mark.parametrize("task", W.TASKS)
def test_nonfinite_loss_under_ddp_stops_every_rank(task, roots, tmp_path):
    work = tmp_path / "w"
    proc = worker({"task": task, "root": str(roots[task]), "work": str(work), "sets": []}, {"NAN_AT": "3:1"}, nproc=2)
    out, err = proc.communicate(timeout=300)  # a rank left in the gradient all-reduce would hang here
    assert proc.returncode != 0
    assert "iteration 4: loss is not finite" in err
    assert newest(work)[0] == 3  # the last whole iteration is kept
    assert not (work / "train.lock").exists()


def test_sigterm_on_one_rank_stops_every_rank_with_exit_0(roots, tmp_path):
    work = tmp_path / "w"
    proc = worker({"task": "seg", "root": str(roots["seg"]), "work": str(work), "cli": True,
                   "sets": ["train.checkpoint_interval=0"]}, {"SIGTERM_AT": "3:1"}, nproc=2)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "interrupted at iteration 3: saved" in err and "continue with --resume" in err
    assert newest(work) == (3, "iter_3.pth") and not (work / "train.lock").exists()


@pytest.mark.parametrize("task", W.TASKS)
def test_signal_saves_a_whole_iteration_and_resumes_exactly(task, roots, reference, tmp_path, monkeypatch):
    sig = signal.SIGINT if task == "seg" else signal.SIGTERM
    before = signal.getsignal(sig)
    signal.signal(sig, signal.default_int_handler)  # as in a terminal; never the default (it would end pytest)
    real_step, calls = loop_module.optimizer_step, []

    def step_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(sig)  # lands in the middle of iteration 3
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop_module, "optimizer_step", step_then_signal)
    with pytest.raises(KeyboardInterrupt):
        W.run(task, roots[task], tmp_path, sets=["train.checkpoint_interval=0"] if task != "cls"
              else ["checkpoint_interval=0"])
    assert newest(tmp_path) == (3, "iter_3.pth")
    monkeypatch.setattr(loop_module, "optimizer_step", real_step)
    W.run(task, roots[task], tmp_path, resume=True)
    assert_same_weights(reference[task][1][1], W.last_weights(tmp_path)[1])
    assert signal.getsignal(sig) is signal.default_int_handler  # the handler is put back
    signal.signal(sig, before)


def test_a_second_ctrl_c_still_saves_the_last_whole_iteration(roots, tmp_path):
    """People press Ctrl-C again; the second one stops sooner but never loses the last whole iteration."""
    spec = {"task": "seg", "root": str(roots["seg"]), "cli": True, "sets": ["train.checkpoint_interval=0"]}
    # both inside the optimizer step of iteration 3: the step completes, iteration 3 is saved at once
    proc = worker({**spec, "work": str(tmp_path / "a")}, {"SIGNALS": "step3:INT,INT"})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert ("setr: Ctrl-C: finishing iteration 3, then saving it and stopping; Ctrl-C again to stop sooner (the "
            "last whole iteration is still saved), three times to quit without saving") in err
    assert "setr: Ctrl-C again: stopping after the optimizer step of iteration 3, then saving it" in err
    assert f"stopped at once at iteration 3 (second signal): saved iteration 3 in {tmp_path / 'a' / 'iter_3.pth'}" in err
    assert newest(tmp_path / "a") == (3, "iter_3.pth") and not (tmp_path / "a" / "train.lock").exists()
    # the first during the step, the second during the (long) evaluation that follows: iteration 3 is saved
    proc = worker({**spec, "work": str(tmp_path / "b"), "validate": True,
                   "sets": [*spec["sets"], "train.eval_interval=3"]}, {"SIGNALS": "step3:INT;eval:INT"})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "setr: Ctrl-C again: stopping now, saving iteration 3, the last whole one" in err
    assert "saved iteration 3 in" in err and newest(tmp_path / "b") == (3, "iter_3.pth")


def test_sigterm_forwarded_by_timeout_saves_also_when_sent_twice(roots, tmp_path):
    """``timeout 600 setr train ...`` forwards its SIGTERM (to the command and to its process group: it can arrive
    twice, as with make): the run saves the last whole iteration and exits 0 either way."""
    spec = {"task": "seg", "root": str(roots["seg"]), "cli": True, "sets": ["train.checkpoint_interval=0"]}
    proc = subprocess.Popen(["timeout", "600", sys.executable, WORKER, json.dumps({**spec, "work": str(tmp_path / "a")})],
                            env={**ENV, "SIGNALS": "step3:TERM", "SIGNAL_TO": "parent"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "setr: SIGTERM: finishing iteration 3, then saving it and stopping" in err
    assert newest(tmp_path / "a") == (3, "iter_3.pth") and not (tmp_path / "a" / "train.lock").exists()
    # two SIGTERMs for certain (both during the optimizer step of iteration 3)
    proc = worker({**spec, "work": str(tmp_path / "b")}, {"SIGNALS": "step3:TERM,TERM"})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "setr: SIGTERM again: stopping after the optimizer step of iteration 3, then saving it" in err
    assert newest(tmp_path / "b") == (3, "iter_3.pth") and not (tmp_path / "b" / "train.lock").exists()


def test_three_ctrl_c_quit_without_saving(roots, tmp_path, monkeypatch):
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    real_step, calls = loop_module.optimizer_step, []

    def step_then_three_signals(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            for _ in range(3):
                signal.raise_signal(signal.SIGINT)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop_module, "optimizer_step", step_then_three_signals)
    try:
        with pytest.raises(KeyboardInterrupt) as stopped:
            W.run("seg", roots["seg"], tmp_path, sets=["train.checkpoint_interval=0"])
    finally:
        signal.signal(signal.SIGINT, before)
    assert not getattr(stopped.value, "checkpointed", False)  # the command line exits 130
    assert newest(tmp_path) == (0, "") and not (tmp_path / "train.lock").exists()


@pytest.mark.parametrize("task", W.TASKS)
def test_an_exception_saves_the_last_whole_iteration(task, roots, reference, tmp_path, monkeypatch):
    cls = W.task_class(task)
    real_forward, calls = cls.forward, []

    def failing_forward(self, batch, autocast):
        calls.append(1)
        if len(calls) == 6:  # iteration 6 (1-based): 5 whole iterations done
            raise RuntimeError("a bad sample")
        return real_forward(self, batch, autocast)

    monkeypatch.setattr(cls, "forward", failing_forward)
    no_interval = ["train.checkpoint_interval=0"] if task != "cls" else ["checkpoint_interval=0"]
    with pytest.raises(RuntimeError, match="a bad sample"):
        W.run(task, roots[task], tmp_path, sets=no_interval)
    assert newest(tmp_path) == (5, "iter_5.pth")
    assert "RuntimeError at iteration 6: saved the last whole iteration" in (tmp_path / "train.log").read_text()
    monkeypatch.setattr(cls, "forward", real_forward)
    W.run(task, roots[task], tmp_path, resume=True)
    assert_same_weights(reference[task][1][1], W.last_weights(tmp_path)[1])


@pytest.mark.parametrize("task", W.TASKS)
def test_pruning_keeps_the_newest_and_never_the_current_runs_last(task, roots, reference, tmp_path):
    keep = "train.keep_checkpoints" if task != "cls" else "keep_checkpoints"
    W.run(task, roots[task], tmp_path / "a", sets=[f"{keep}=2"])
    names = sorted(p.name for _, p in list_checkpoints(tmp_path / "a", 2))
    assert names == (["iter_5.pth", "iter_6.pth"] if task == "seg" else ["epoch_3.pth", "iter_5.pth"])
    # resuming an older checkpoint (of this run) in a work dir holding newer ones: the checkpoint the resumed run
    # writes is its newest and survives pruning, even with keep 1
    import shutil

    ref_work = tmp_path / "b"
    shutil.copytree(reference[task][0], ref_work)
    start = ref_work / "iter_3.pth"
    stop = "train.stop_at" if task != "cls" else "stop_at"
    W.run(task, roots[task], ref_work, resume=start, sets=[f"{keep}=1", f"{stop}=4"])
    assert (ref_work / ("iter_4.pth" if task == "seg" else "epoch_2.pth")).is_file()


@pytest.mark.parametrize("task", W.TASKS)
def test_bad_resume_paths_and_other_runs(task, roots, reference, tmp_path):
    root, ref_work = roots[task], reference[task][0]
    with pytest.raises(SetrError, match="checkpoint not found"):
        W.run(task, root, tmp_path / "w", resume=tmp_path / "missing.pth")
    with pytest.raises(SetrError, match="takes a checkpoint file"):
        W.run(task, root, tmp_path / "w", resume=tmp_path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SetrError, match="junk.pth"):
        W.run(task, root, tmp_path / "w", resume=tmp_path / "junk.pth")
    torch.save({"state_dict": {}}, tmp_path / "weights.pth")
    with pytest.raises(SetrError, match="not a setr training checkpoint .* use --load-from"):
        W.run(task, root, tmp_path / "w", resume=tmp_path / "weights.pth")
    other_task = {"seg": "cls", "cls": "det", "det": "seg"}[task]
    names = {"seg": "segmentation", "cls": "classification", "det": "detection"}
    with pytest.raises(SetrError, match=f"a {names[other_task]} checkpoint, not a {names[task]} one"):
        W.run(task, root, tmp_path / "w", resume=reference[other_task][0] / "iter_3.pth")
    # another preset: the checkpoint's own preset name is named
    state = read_checkpoint(ref_work / "iter_3.pth")
    state["meta"]["preset"] = "some_other_preset"
    state["meta"].pop("model", None)
    torch.save(state, tmp_path / "other_preset.pth")
    with pytest.raises(SetrError, match="checkpoint is from preset some_other_preset"):
        W.run(task, root, tmp_path / "w", resume=tmp_path / "other_preset.pth")
    # the same preset with another configuration: refused, naming the key
    change = {"seg": "model.decode_head.channels=8", "cls": "smoothing=0.2", "det": "train.lr=0.001"}[task]
    with pytest.raises(SetrError, match=r"another configuration \(.*(channels|smoothing|lr): "):
        W.run(task, root, tmp_path / "w", resume=ref_work / "iter_3.pth", sets=[change])
    # nothing was started by the refusals, and the work dir is free again
    assert not list_checkpoints(tmp_path / "w") and not (tmp_path / "w" / "train.lock").exists()


@pytest.mark.parametrize("task", W.TASKS)
def test_resume_with_nothing_to_resume_starts_at_zero(task, roots, tmp_path, caplog):
    stop = "train.stop_at" if task != "cls" else "stop_at"
    with caplog.at_level("WARNING", logger="setr"):
        W.run(task, roots[task], tmp_path, resume=True, sets=[f"{stop}=1"])
    # the library warns through logging (the command line prints it as one line on stderr)
    err = "\n".join(r.getMessage() for r in caplog.records if r.name == "setr.engine.loop" and r.levelname == "WARNING")
    assert f"--resume: no checkpoint in {tmp_path} yet; starting from iteration 0" in err
    assert newest(tmp_path) == (1, "iter_1.pth")


def test_a_work_dir_belongs_to_one_run(roots, tmp_path, caplog):
    root = roots["seg"]
    W.run("seg", root, tmp_path, sets=["train.stop_at=2"])
    with pytest.raises(SetrError, match=r"holds another run's checkpoints \(iter_1.pth, iter_2.pth\): continue it "
                                        r"with --resume, pick another --work-dir, or discard them with --overwrite"):
        W.run("seg", root, tmp_path)
    W.run("seg", root, tmp_path, overwrite=True, sets=["train.stop_at=1"])
    assert [p.name for _, p in list_checkpoints(tmp_path)] == ["iter_1.pth"]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    # a live run holds the lock: refused in one line naming it (this test's own process is alive)
    (tmp_path / "train.lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                                                     "started": "now"}))
    with pytest.raises(SetrError, match=rf"in use by a live training run \(pid {os.getpid()} on"):
        W.run("seg", root, tmp_path, resume=True)
    # a lock of a dead process is taken over with a warning; stale temporary files are removed
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "train.lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    (tmp_path / ".iter_2.pth.abc123.tmp").write_bytes(b"half a checkpoint")
    caplog.clear()
    with caplog.at_level("WARNING", logger="setr"):
        W.run("seg", root, tmp_path, resume=True, sets=["train.stop_at=2"])
    err = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert f"taking over the stale lock of pid {dead.pid}" in err and "removed 1 temporary file(s)" in err
    assert not (tmp_path / ".iter_2.pth.abc123.tmp").exists() and not (tmp_path / "train.lock").exists()


def test_stop_at_and_metrics_jsonl_through_the_cli(roots, reference, tmp_path, capsys):
    from setr.cli import main
    from setr.engine.schedule import poly_lr

    from helpers import tiny_sets

    preset = W.seg_preset()

    sets = tiny_sets(preset, crop=32, depth=2) + ["model.backbone.drop_path_rate=0.1", f"train.iters={W.ITERS}",
                                                  "train.checkpoint_interval=1", f"train.eval_interval={W.ITERS}",
                                                  "train.keep_checkpoints=0"]
    base = ["train", W.SEG_PRESET, "--data-root", str(roots["seg"]), "--work-dir", str(tmp_path), "--no-progress",
            "--no-validate", "--device", "cpu"]
    assert main(base + ["--set", *sets, "train.stop_at=3"]) == 0
    err = capsys.readouterr().err
    assert "stopped at iteration 3 of 6 (train.stop_at)" in err and "--resume" in err
    assert newest(tmp_path) == (3, "iter_3.pth")
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 1, 2]
    r = preset.train
    for rec in records:  # the poly schedule runs over the full train.iters, not stop_at
        assert rec["lr"]["backbone"] == poly_lr(r.lr, rec["iteration"], W.ITERS, r.poly_power, r.min_lr)
        assert rec["lr"]["heads"] == poly_lr(r.lr * r.head_lr_mult, rec["iteration"], W.ITERS, r.poly_power, r.min_lr)
        assert set(rec["losses"]) == {"decode.loss_seg", "aux_0.loss_seg", "aux_1.loss_seg", "aux_2.loss_seg"}
        assert rec["total_loss"] == pytest.approx(sum(rec["losses"].values()), rel=1e-6)
    real_step, calls = loop_module.optimizer_step, []

    def step_then_sigterm(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGTERM)
        return real_step(*args, **kwargs)

    before = signal.signal(signal.SIGTERM, signal.default_int_handler)  # never the default: it would end pytest
    loop_module.optimizer_step = step_then_sigterm
    try:  # SIGTERM: the iteration in flight finishes, is saved, and the command exits 0 with a resume hint
        assert main(base + ["--resume", "--set", *sets]) == 0
    finally:
        loop_module.optimizer_step = real_step
        signal.signal(signal.SIGTERM, before)
    assert "interrupted at iteration 4: saved" in capsys.readouterr().err
    assert newest(tmp_path) == (4, "iter_4.pth")
    assert main(base + ["--resume", "--set", *sets]) == 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == list(range(W.ITERS))
    assert_same_weights(reference["seg"][1][1], W.last_weights(tmp_path)[1])
    want = [json.loads(line) for line in (reference["seg"][0] / "metrics.jsonl").read_text().splitlines()]
    assert records == want  # full-precision floats: the same numbers as the uninterrupted run


def test_cli_refuses_another_runs_work_dir_in_one_line(roots, tmp_path, capsys):
    from setr.cli import main

    base = ["train", W.SEG_PRESET, "--data-root", str(roots["seg"]), "--work-dir", str(tmp_path), "--no-progress",
            "--no-validate", "--device", "cpu"]
    sets = ["--set", *W.seg_sets(["train.stop_at=1"])]
    assert main(base + sets) == 0
    capsys.readouterr()
    assert main(base + sets) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert ("holds another run's checkpoints (iter_1.pth): continue it with --resume, pick another --work-dir, "
            "or discard them with --overwrite") in err
    assert main(base + ["--overwrite"] + sets) == 0
    assert "--overwrite: removed 1 checkpoint(s) of the previous run" in capsys.readouterr().err


def test_config_differences_name_keys_and_allow_new_settings():
    from setr.engine.loop import config_differences

    stored = {"train": {"lr": 0.01, "iters": 100}, "model": {"aux_heads": [{"channels": 16}]}}
    # run length may change; a setting added since (absent from the stored config) is no difference
    assert config_differences(stored, {"train": {"lr": 0.01, "iters": 200, "stop_at": 50},
                                       "model": {"aux_heads": [{"channels": 16, "new_field": 1}]}}) == []
    assert config_differences(stored, {"train": {"lr": 0.02, "iters": 100},
                                       "model": {"aux_heads": [{"channels": 8}]}}) == [
        "model.aux_heads.0.channels: 16 there, 8 here", "train.lr: 0.01 there, 0.02 here"]
    assert config_differences(stored, {"model": {"aux_heads": []}}) == ["model.aux_heads: '<1 items>' there, [] here"]


def test_default_work_dir_never_adopts_another_run(tmp_path, caplog):
    """Without --work-dir, the same command line runs again: a new run goes next to an older one (never into
    it), and --resume picks the newest run that has checkpoints."""
    import os
    import time

    from setr.engine.workdir import default_work_dir

    root = tmp_path / "work_dirs"
    assert default_work_dir("P", None, root) == root / "P"
    (root / "P").mkdir(parents=True)
    assert default_work_dir("P", None, root) == root / "P"  # empty: still free
    (root / "P" / "iter_10.pth").write_bytes(b"x")
    assert default_work_dir("P", None, root) == root / "P-2"
    assert "holds another run" in caplog.text
    (root / "P-2").mkdir()
    (root / "P-2" / "iter_5.pth").write_bytes(b"x")
    assert default_work_dir("P", None, root) == root / "P-3"
    old = time.time() - 100
    os.utime(root / "P" / "iter_10.pth", (old, old))
    assert default_work_dir("P", True, root) == root / "P-2"  # the newest run with checkpoints
    assert default_work_dir("Q", True, root) == root / "Q"

"""Training through faults: SIGKILL at scripted moments (checkpoint writes included), SIGTERM and Ctrl-C, a full disk,
non-finite losses and gradients (skip, roll back, give up) and a damaged config.json. Checkpoint files that are not
what they claim to be are in test_checkpoint.py."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import introvae
import introvae.atomic as atomic
from introvae import Config, Model, train
from introvae.checkpoint import check_safetensors, load_networks, load_tree
from introvae.data import open_data
from introvae.engine import MAX_BAD_STEPS, step_phases
from introvae.errors import UserError
from introvae.objectives import Phase, build_objective
from introvae.plot import plot_dynamics
from introvae.rundir import RunDir
from introvae.runlog import read_log
from introvae.train import (
    MAX_ROLLBACKS,
    RunOutputs,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
)

SRC = Path(introvae.__file__).resolve().parent


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread here and in the children: the same arithmetic everywhere, and on a busy machine two threads spin
    against other jobs and make these tiny steps ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_pictures(monkeypatch):
    """The end-of-run pictures cost seconds on a busy CPU and are not what these tests are about."""
    monkeypatch.setattr(RunOutputs, "grid", lambda self, step: None)
    monkeypatch.setattr(sys.modules[Trainer.__module__], "write_summary_images", lambda *args: None)


def _env():
    # One thread in the children and in the in-process reference: the same arithmetic, and kind to a shared machine.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC.parent)}


def _logged_steps(run):
    return [r["step"] for r in read_log(run / "log.jsonl") if "event" not in r] if (run / "log.jsonl").exists() else []


def _resumed_at(text):
    return int(re.search(r"introvae: resuming at step (\d+)", text).group(1))


def _wait_for_progress(run, proc, after, timeout=90.0):
    """Wait until the process has logged a step beyond `after` (training is under way), or has exited."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            steps = _logged_steps(run)
        except UserError:
            steps = []
        if steps and steps[-1] > after:
            return
        time.sleep(0.02)
    assert proc.poll() is not None or time.time() < deadline, "the training process made no progress"


def _assert_no_partial_files(run):
    """Every file under a final name is whole: checkpoints are whole safetensors, the JSON files parse."""
    json.loads((run / "config.json").read_text())
    json.loads((run / "split.json").read_text())
    for path in (run / "checkpoints").glob("*.safetensors"):
        check_safetensors(path)
        if path.name.startswith("train-"):
            assert load_tree(path)["step"] == int(path.stem.split("-")[1])


def _temporaries(run):
    return sorted(p.relative_to(run).as_posix() for p in run.rglob("*.tmp"))


# ---------------------------------------------------------------- SIGKILL at scripted moments

KILLED_TRAIN = Path(__file__).parent / "helpers" / "killed_train.py"
# Where each process kills itself: inside (mid) or just after (after) its Nth checkpoint file write. A checkpoint is
# two files, so these land in the first and the second file of a checkpoint, between checkpoints, and on the first
# write after a resume; the order was drawn once at random and is fixed, so no run depends on the machine's speed.
KILLS = [("mid", 3), ("after", 3), ("mid", 4), ("after", 2), ("mid", 1), ("after", 5)]


@pytest.mark.slow
def test_sigkill_at_scripted_moments_always_resumes_from_the_newest_complete_checkpoint(tmp_path, tiny_cli):
    run, steps = tmp_path / "run", 30
    base = ["--steps", str(steps), "--checkpoint-every", "1", "--keep-checkpoints", "2"]
    trials, resumed_from = [], []
    for trial, (moment, count) in enumerate(KILLS):
        fresh = ["--out", str(run), "--quiet", *tiny_cli(checkpoint_every=None)]
        args = base + (fresh if trial == 0 else ["--resume", str(run)])
        proc = subprocess.run([sys.executable, str(KILLED_TRAIN), moment, str(count), "--", *args], env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
        if trial:
            resumed_from.append(_resumed_at(proc.stderr))
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        files = sorted(p.name for p in (run / "checkpoints").iterdir())
        complete = RunDir(run).checkpoint_steps()
        _assert_no_partial_files(run)
        trials.append({"kill": f"{moment} write {count}", "logged": _logged_steps(run)[-1], "complete": complete,
                       "temporaries": [f for f in files if f.endswith(".tmp")],
                       "orphans": [f for f in files if f.startswith("train-") and
                                   not (run / "checkpoints" / f.replace("train-", "model-")).exists()]})
    last = subprocess.run([sys.executable, "-m", "introvae", "train", *base, "--resume", str(run)], env=_env(),
                          capture_output=True, text=True, timeout=300)  # the last resume runs to the end
    assert last.returncode == 0, last.stderr[-2000:]
    resumed_from.append(_resumed_at(last.stderr))

    print("\nSIGKILL trials:")
    for t, start in zip(trials, resumed_from):
        where = ("mid-write: " + ", ".join(t["temporaries"]) if t["temporaries"] else "between writes") + \
                (f"; orphan {t['orphans']}" if t["orphans"] else "")
        print(f"  killed {t['kill']}, last logged step {t['logged']}, complete checkpoints {t['complete']} "
              f"({where}) -> resumed from step {start}")
    for t, start in zip(trials, resumed_from):
        assert start == (t["complete"][-1] if t["complete"] else 0)  # the newest complete checkpoint, every time
        assert t["logged"] >= start  # the log may run ahead of the checkpoint; resuming truncates it
    assert all(t["temporaries"] for t, (moment, _) in zip(trials, KILLS) if moment == "mid")  # left by the writes
    assert any(t["orphans"] for t in trials)  # and at least one left half a checkpoint
    # The run ends where it should, its log continues exactly (no repeated or missing steps), nothing half-written
    # is left under a final name and the temporaries of the killed writes are gone.
    assert RunDir(run).checkpoint_steps() == [steps - 1, steps]
    assert _logged_steps(run) == list(range(1, steps + 1))
    _assert_no_partial_files(run)
    assert _temporaries(run) == []
    # And the killed-and-resumed run is the uninterrupted run, bit for bit (CPU, one thread).
    config = Config.load(run / "config.json")
    dataset = config.dataset
    data = open_data(dataset.path, dataset.image_size, dataset.channels, dataset.test_fraction, config.run.seed,
                     dataset.builtin_count)
    reference = Trainer(config, tmp_path / "reference", data, quiet=True)
    while reference.step < steps:
        reference.train_step()
    reference.outputs.prepare(reference.step)  # checkpoints hold batch-norm statistics re-estimated on real images
    final = Model.load(run, device="cpu").networks.state_dict()
    assert all(torch.equal(final[k], v) for k, v in reference.networks.state_dict().items())


def test_resume_copes_with_a_log_ahead_of_the_checkpoint_and_a_half_written_line(tmp_path, tiny_config):
    run = train(tiny_config(steps=3, checkpoint_every=2), out=tmp_path / "r", quiet=True)
    (run / "checkpoints" / "model-00000003.safetensors").unlink()  # as if killed before step 3's checkpoint
    with (run / "log.jsonl").open("a") as log:
        log.write(json.dumps({"step": 4, "ae": 1.0}) + "\n" + '{"step": 5, "ae": 0.')  # killed mid-line
    (run / "checkpoints" / ".model-00000004.safetensors.999999.0123abcd.tmp").write_bytes(b"partial")
    train(resume=run, steps=4, quiet=True)
    assert _logged_steps(run) == [1, 2, 3, 4]
    assert RunDir(run).checkpoint_steps() == [2, 4] and _temporaries(run) == []
    assert not (run / "checkpoints" / "train-00000003.safetensors").exists()  # the orphaned half is gone


# ---------------------------------------------------------------- SIGTERM and Ctrl-C

@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_with_status_2(tmp_path, tiny_cli):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "introvae", "train", *tiny_cli(steps=1000), "--out", str(run), "--quiet"]
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_progress(run, proc, after=1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err[-2000:]
    stopped = _logged_steps(run)[-1]
    assert err.strip().splitlines() == [f"introvae: error: stopped by SIGTERM at step {stopped}; a checkpoint was "
                                        f"saved: continue with `introvae train --resume {run}`."]
    assert RunDir(run).checkpoint_steps() == [stopped] and out == ""
    train(resume=run, steps=stopped + 2, quiet=True)
    assert RunDir(run).checkpoint_steps()[-1] == stopped + 2 and _logged_steps(run) == list(range(1, stopped + 3))


class Faulty:
    """Wraps an objective; `fault(step)` says what to do to the first phase of a step: None, "nan" (its loss),
    "grad" (a finite loss whose gradients are NaN), "fast-nan" (a NaN loss without the forward pass: cheap), or a
    callable to run first."""

    def __init__(self, inner, fault):
        self.inner, self.fault = inner, fault
        self.name, self.roles, self.default_lr = inner.name, inner.roles, inner.default_lr

    def __getattr__(self, name):  # the rest of the objective's interface (its state, its events)
        return getattr(self.inner, name)

    def phases(self, networks, x, step, noise):
        kind = self.fault(step)
        if kind == "fast-nan":
            yield Phase(self.roles[0], next(networks[self.roles[0]].parameters()).sum() * float("nan"))
            return
        for index, phase in enumerate(self.inner.phases(networks, x, step, noise)):
            if index == 0 and kind == "nan":
                phase.loss = phase.loss * float("nan")
            elif index == 0 and kind == "grad":
                phase.loss = _NanGradient.apply(phase.loss)
            elif index == 0 and callable(kind):
                kind()
            yield phase


class _NanGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


@pytest.fixture
def faulty_trainer(tiny_config):
    """A Trainer of 6 steps of the tiny run (with `options`) in `run_dir`, its objective wrapped in Faulty."""

    def make(run_dir, fault, **options):
        config = tiny_config(**{"steps": 6, **options})
        dataset = config.dataset
        data = open_data(dataset.path, dataset.image_size, dataset.channels, dataset.test_fraction, config.run.seed,
                         dataset.builtin_count)
        trainer = Trainer(config, run_dir, data, quiet=True)
        trainer.engine.objective = Faulty(trainer.engine.objective, fault)
        return trainer

    return make


@pytest.fixture
def ctrl_c_delivered():
    """Python's own Ctrl-C handler, even when pytest was started in the background, where the shell hands it
    SIGINT ignored (and the trainer rightly leaves an ignored signal alone)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_after_the_step_and_saves_and_a_second_one_stops_at_once(tmp_path, ctrl_c_delivered,
                                                                              faulty_trainer):
    handler, term = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    once = faulty_trainer(tmp_path / "a",
                          lambda step: (lambda: os.kill(os.getpid(), signal.SIGINT)) if step == 2 else None)
    with pytest.raises(TrainingInterrupted, match=r"^interrupted at step 3; a checkpoint was saved") as caught:
        once.fit()
    assert caught.value.checkpoint_saved and caught.value.step == 3 and RunDir(tmp_path / "a").checkpoint_steps() == [3]
    assert signal.getsignal(signal.SIGINT) is handler  # put back

    def twice():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    hurried = faulty_trainer(tmp_path / "b", lambda step: twice if step == 2 else None, checkpoint_every=1)
    with pytest.raises(TrainingInterrupted, match=r"during step 3, so its state was not saved; continue from the "
                                                  r"newest checkpoint, at step 2") as caught:
        hurried.fit()
    assert not caught.value.checkpoint_saved and RunDir(tmp_path / "b").checkpoint_steps() == [1, 2]
    assert signal.getsignal(signal.SIGINT) is handler and signal.getsignal(signal.SIGTERM) == term


# ---------------------------------------------------------------- non-finite losses and gradients

def _snapshot(trainer):
    weights = {k: v.clone() for k, v in trainer.networks.state_dict().items()}
    adam = {n: [s["step"].clone() for s in o.state.values()] for n, o in trainer.engine.optimizers.items()}
    return weights, adam


def _same(a, b):
    return a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and \
        all(torch.equal(x, y) for n in a[1] for x, y in zip(a[1][n], b[1][n]))


@pytest.mark.parametrize("kind", ["nan", "grad"])
def test_a_non_finite_step_is_skipped_before_any_optimizer_steps(tmp_path, kind, faulty_trainer):
    faults = {1: kind}
    trainer = faulty_trainer(tmp_path, lambda step: faults.pop(step, None))
    assert trainer.train_step() and trainer.step == 1
    before, seen = _snapshot(trainer), trainer.images_seen
    assert trainer.train_step() == {}  # the encoder's loss (or only its gradient) is not finite: skipped
    # the batch is consumed
    assert trainer.step == 1 and trainer.engine.bad_steps == 1 and trainer.images_seen == seen + 4
    assert _same(_snapshot(trainer), before)  # no weight, no Adam state moved
    assert all(p.grad is None for p in trainer.networks.parameters())
    assert trainer.train_step() and trainer.step == 2 and trainer.engine.bad_steps == 0



@pytest.mark.slow
def test_ten_bad_steps_in_a_row_roll_back_with_half_the_learning_rate(tmp_path, faulty_trainer, read_chart):
    attempts = {"bad": 0}

    def fault(step):  # the 5th step fails 10 times, then works
        if step == 4 and attempts["bad"] < MAX_BAD_STEPS:
            attempts["bad"] += 1
            return "fast-nan"
        return None

    trainer = faulty_trainer(tmp_path, fault, steps=7, checkpoint_every=3)
    trainer.fit()
    assert attempts["bad"] == MAX_BAD_STEPS and trainer.step == 7 and trainer.rollbacks == 1
    records = read_log(tmp_path / "log.jsonl")
    events = [r for r in records if r.get("event")]
    assert events == [{"step": 3, "event": "rollback", "to_step": 3, "diverged_at": 4, "network": "encoder",
                       "lr_scale": 0.5, "rollbacks": 1}]
    assert [r["step"] for r in records] == [1, 2, 3, 3, 4, 5, 6, 7]  # step 4 was trained once more, after the event
    base = trainer.config.resolved_lr()
    state = load_tree(RunDir(tmp_path).train_state(7))
    assert state["lr_scale"] == 0.5 and state["rollbacks"] == 1
    assert all(g["lr"] == base * 0.5 for o in state["optimizers"].values() for g in o["param_groups"])
    # The smaller learning rate survives a resume, and the event does not trouble the log's readers.
    resumed = Trainer(trainer.config.replace(steps=8), tmp_path, trainer.data, quiet=True).resume()
    assert resumed.step == 7 and resumed.engine.lr_scale == 0.5
    assert all(g["lr"] == base * 0.5 for o in resumed.engine.optimizers.values() for g in o.param_groups)
    plot_dynamics(records, tmp_path / "dynamics.png")
    read_chart(tmp_path / "dynamics.png")


def test_persistent_nan_stops_after_three_roll_backs_to_the_initial_state(tmp_path, faulty_trainer):
    calls = {"bad": 0}

    def fault(step):
        if step >= 2:
            calls["bad"] += 1
            return "fast-nan"
        return None

    trainer = faulty_trainer(tmp_path, fault, steps=10)  # no checkpoint yet: the roll-backs go to the initial weights
    initial = dict(Model.build(trainer.config).networks.named_parameters())
    with pytest.raises(TrainingDiverged, match=rf"not finite {MAX_BAD_STEPS} steps in a row, even after "
                                               rf"{MAX_ROLLBACKS} roll-backs .*x0.125.*--lr.*--margin.*--beta"):
        trainer.fit()
    assert calls["bad"] == (MAX_ROLLBACKS + 1) * MAX_BAD_STEPS
    events = [r for r in read_log(tmp_path / "log.jsonl") if r.get("event") == "rollback"]
    assert [(e["to_step"], e["lr_scale"]) for e in events] == [(0, 0.5), (0, 0.25), (0, 0.125)]
    assert RunDir(tmp_path).checkpoint_steps() == [0]  # saved at each roll-back, with the scale
    model = Model.build(trainer.config.replace(seed=1))
    load_networks(RunDir(tmp_path).model_weights(0), model.networks)
    # The initial weights (the batch-norm statistics of a checkpoint are re-estimated on real images).
    assert all(torch.equal(model.networks.state_dict()[k], v) for k, v in initial.items())
    assert load_tree(RunDir(tmp_path).train_state(0))["lr_scale"] == 0.125


# ---------------------------------------------------------------- a full disk

@pytest.mark.parametrize("failing", ["train", "model"])
def test_a_full_disk_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, failing, tiny_config):
    original = atomic._write_and_sync

    def write(f, data):
        if f"{failing}-00000004" in f.name:  # the second checkpoint
            f.write(data[:len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        original(f, data)

    monkeypatch.setattr(atomic, "_write_and_sync", write)
    run = tmp_path / "r"
    with pytest.raises(UserError, match=rf"writing .*{failing}-00000004.safetensors failed: the disk is full .*; the "
                                        r"previous checkpoint, at step 2, is intact: make room, then continue with "
                                        rf"`introvae train --resume {re.escape(str(run))}`"):
        train(tiny_config(steps=6, checkpoint_every=2), out=run, quiet=True)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["model-00000002.safetensors",
                                                                        "train-00000002.safetensors"]
    assert load_tree(RunDir(run).train_state(2))["step"] == 2
    Model.load(run, device="cpu")
    monkeypatch.setattr(atomic, "_write_and_sync", original)
    train(resume=run, quiet=True)
    assert RunDir(run).checkpoint_steps() == [2, 4, 6]


# ---------------------------------------------------------------- files that are not what they claim to be


@pytest.mark.parametrize("section, edit, message", [
    ("networks", {"latent_dim": -4}, r"--latent-dim must be at least 1, got -4"),
    ("networks", {"latent_dim": "big"}, r"--latent-dim must be a whole number, got 'big'"),
    ("networks", {"arch": "huge"}, r"--arch"),
    ("dataset", {"image_size": 30}, r"--image-size 30 is not supported"),
])
def test_a_damaged_config_json_is_refused_in_one_sentence_that_names_it(tmp_path, section, edit, message,
                                                                        tiny_config):
    run = train(tiny_config(steps=1), out=tmp_path / "r", quiet=True)
    config = json.loads((run / "config.json").read_text())
    config[section].update(edit)
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=rf"^{re.escape(str(run / 'config.json'))}: {message}"):
        Model.load(run, device="cpu")


def test_a_non_finite_gradient_with_a_finite_loss_is_caught_before_its_optimizer_steps(tiny_config):
    config = tiny_config()
    model = Model.build(config)
    objective = build_objective(config)
    optimizers = {n: torch.optim.Adam(model.networks[n].parameters(), lr=1e-3) for n in objective.roles}
    stepped = []
    for name, optimizer in optimizers.items():
        optimizer.step = (lambda n, f: lambda *a, **k: (stepped.append(n), f(*a, **k))[1])(name, optimizer.step)

    class SecondPhaseBad(Faulty):
        def phases(self, networks, x, step, noise):
            for index, phase in enumerate(self.inner.phases(networks, x, step, noise)):
                if index == 1:
                    phase.loss = _NanGradient.apply(phase.loss)
                    assert torch.isfinite(phase.loss)
                yield phase

    generator = [p.clone() for p in model.networks["generator"].parameters()]
    logs, bad = step_phases(SecondPhaseBad(objective, None), model.networks, optimizers, torch.rand(4, 3, 16, 16), 0,
                            torch.Generator().manual_seed(0))
    assert (logs, bad) == ({}, "generator") and stepped == ["encoder"]  # the encoder's phase ran, the generator's not
    assert all(torch.equal(p, q) for p, q in zip(model.networks["generator"].parameters(), generator))

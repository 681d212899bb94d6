"""`--compile`: the decision and its first line, compiled training against eager on tiny networks, checkpoint keys,
resuming across both ways, a refused compiler and a compile that fails mid-run.

Most tests compile with torch.compile's "aot_eager" backend (`introvae.compiling.BACKEND`): it traces, guards and
differentiates like inductor but generates no C++, so they check the plumbing without minutes of compiling. One slow
test compiles with inductor itself, as a run does."""

import io

import pytest
import torch

from introvae import Model, compiling, train
from introvae.cli import main
from introvae.compiling import AUTO_MIN_STEPS, resolve_compile
from introvae.errors import UserError
from introvae.progress import Progress
from introvae.runlog import read_log
from introvae.runspec import RunSpec
from introvae.train import first_line


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from scratch, so one test's graphs (and dynamo's per-function limit on them) do not carry
    into the next."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def traced(monkeypatch):
    """Compile with the aot_eager backend (see the module docstring)."""
    monkeypatch.setattr(compiling, "BACKEND", "aot_eager")


def _losses(run_dir):
    """The loss records of a run's log, events left out."""
    return [r for r in read_log(run_dir / "log.jsonl") if "event" not in r]


def _assert_close_losses(a, b, rtol):
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for left, right in zip(a, b):
        for key in left.keys() - {"time"}:
            assert left[key] == pytest.approx(right[key], rel=rtol, abs=1e-6), (left["step"], key)


def _weights(run_dir, step=None):
    return Model.load(run_dir, step=step, device="cpu").networks.state_dict()


def test_auto_compiles_where_it_pays_and_says_why(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(compiling, "unavailable", lambda device: None)
    assert resolve_compile("off", cpu, 10**6) == (None, "as asked")
    mode, reason = resolve_compile("auto", cpu, 10**6)
    assert mode is None and reason.startswith("auto: on a cpu") and "--compile on" in reason
    assert resolve_compile("on", cpu, 10)[0] == "default"
    threshold = 2000
    monkeypatch.setitem(AUTO_MIN_STEPS, "cuda", threshold)  # as once a GPU has measured the compiled step faster
    mode, reason = resolve_compile("auto", cuda, threshold - 1)
    assert mode is None and f"{threshold - 1} steps are too few" in reason
    mode, reason = resolve_compile("auto", cuda, threshold)
    assert mode == "reduce-overhead" and "CUDA graphs" in reason
    monkeypatch.setattr(compiling, "unavailable", lambda device: "no C++ compiler was found")
    assert resolve_compile("on", cpu, 10) == (None, "cannot compile: no C++ compiler was found; training eagerly")


def test_unavailable_names_what_is_missing(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    assert "no C++ compiler" in compiling.unavailable(torch.device("cpu"))
    assert "does not support the device meta" in compiling.unavailable(torch.device("meta"))


def test_the_first_line_says_whether_the_run_compiles_and_why(monkeypatch, tiny_config, tmp_path):
    monkeypatch.setattr(compiling, "unavailable", lambda device: "no C++ compiler was found")
    spec = RunSpec.resolve(tiny_config(precision="fp32", compile="on"), 3)
    line = first_line("32 images", spec, tmp_path)
    assert spec.compile_mode is None
    assert "; compile off (cannot compile: no C++ compiler was found; training eagerly);" in line
    monkeypatch.setattr(compiling, "unavailable", lambda device: None)
    assert "; compile on (as asked; mode default);" in first_line("32 images", RunSpec.resolve(
        tiny_config(precision="fp32", compile="on"), 3), tmp_path)


@pytest.mark.slow
def test_a_refused_compiler_is_one_line_and_the_run_trains_eagerly(tmp_path, tiny_cli, capsys, monkeypatch):
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)  # as on a machine without a C++ compiler
    monkeypatch.delenv("CXX", raising=False)
    assert main(["train", *tiny_cli(steps=2, precision="fp32"), "--compile", "on", "--out",
                 str(tmp_path / "run")]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert "precision fp32 (as asked); compile off (cannot compile: no C++ compiler was found (install g++ or set " \
           "CXX); training eagerly)" in first
    assert [r["step"] for r in _losses(tmp_path / "run")] == [1, 2]
    assert not [r for r in read_log(tmp_path / "run" / "log.jsonl") if "event" in r]


def test_compile_is_a_choice_of_three(tiny_config):
    with pytest.raises(UserError, match="--compile 'yes' is not one of auto, on, off"):
        tiny_config(compile="yes").validate()


def test_progress_leaves_the_compile_time_out_of_its_estimate():
    clock = type("Clock", (), {"now": 0.0, "__call__": lambda self: self.now})()
    stream = io.StringIO()
    progress = Progress(total=100, stream=stream, clock=clock)
    clock.now += 60.0  # a first step that compiled for 59 s
    progress.leave_out(59.0)
    progress.update(1, {})
    assert "<01:39" in stream.getvalue()  # 99 steps at 1 s, not at 60 s


@pytest.mark.slow
def test_compiled_training_matches_eager_with_the_same_checkpoint(tmp_path, tiny_config, traced):
    config = tiny_config(steps=4, warmup_steps=2, precision="fp32", ema=0.9, checkpoint_every=2)
    eager = train(config.replace(compile="off"), out=tmp_path / "eager", quiet=True)
    compiled = train(config.replace(compile="on"), out=tmp_path / "compiled", quiet=True)
    _assert_close_losses(_losses(compiled), _losses(eager), rtol=1e-5)
    # The same keys in every checkpoint, with no wrapper's prefix, and (nearly) the same weights.
    for step in (2, 4):
        a, b = _weights(eager, step), _weights(compiled, step)
        assert list(a) == list(b) and not any("_orig_mod" in key for key in b)
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    events = [r for r in read_log(compiled / "log.jsonl") if r.get("event") == "compile"]
    assert events and all(r["seconds"] > 0 for r in events) and events[0]["step"] == 1


@pytest.mark.slow
def test_resume_crosses_between_compiled_and_eager(tmp_path, tiny_config, traced):
    config = tiny_config(warmup_steps=2, precision="fp32", checkpoint_every=2)
    straight = train(config.replace(steps=4, compile="off"), out=tmp_path / "straight", quiet=True)
    for first, then in (("on", "off"), ("off", "on")):
        run = tmp_path / f"{first}-{then}"
        train(config.replace(steps=2, compile=first), out=run, quiet=True)
        train(resume=run, steps=4, compile=then, quiet=True)
        _assert_close_losses(_losses(run), _losses(straight), rtol=1e-5)
        for key, value in _weights(straight).items():
            torch.testing.assert_close(_weights(run)[key], value, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_compile_that_fails_puts_the_step_back_and_trains_eagerly(tmp_path, tiny_config, capsys, monkeypatch):
    def refuse(graph, inputs):
        raise RuntimeError("simulated: this operation cannot be compiled")

    monkeypatch.setattr(compiling, "BACKEND", refuse)
    config = tiny_config(steps=3, warmup_steps=1, precision="fp32")
    eager = train(config.replace(compile="off"), out=tmp_path / "eager", quiet=True)
    capsys.readouterr()
    failed = train(config.replace(compile="on"), out=tmp_path / "failed")
    err = capsys.readouterr().err
    assert "compile on (as asked; mode default)" in err.splitlines()[0]
    notes = [line for line in err.splitlines() if "compiling failed" in line]
    assert len(notes) == 1 and "training goes on eagerly" in notes[0] and "simulated" in notes[0]
    events = [r for r in read_log(failed / "log.jsonl") if "event" in r]
    # The failure, and the seconds the attempt took (time spent compiling, left out of the estimate like any other).
    assert [(r["event"], r["step"]) for r in events] == [("compile_failed", 1), ("compile", 1)]
    assert "simulated" in events[0]["error"] and events[1]["seconds"] > 0
    # The failed step was put back and taken again eagerly: the run is the eager run, bit for bit.
    assert [{k: v for k, v in r.items() if k != "time"} for r in _losses(failed)] == \
        [{k: v for k, v in r.items() if k != "time"} for r in _losses(eager)]
    a, b = _weights(eager), _weights(failed)
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.slow
def test_inductor_20_steps_match_eager_and_resume_bit_for_bit(tmp_path, tiny_config):
    """The compiler a run uses: 20 fp32 steps (warm-up and game) within 1e-3 of eager, and a compiled run resumed
    compiled continues bit for bit."""
    config = tiny_config(steps=20, warmup_steps=5, precision="fp32", checkpoint_every=10, log_every=5)
    eager = train(config.replace(compile="off"), out=tmp_path / "eager", quiet=True)
    compiled = train(config.replace(compile="on"), out=tmp_path / "compiled", quiet=True)
    _assert_close_losses(_losses(compiled), _losses(eager), rtol=1e-3)
    assert list(_weights(compiled)) == list(_weights(eager))
    resumed = tmp_path / "resumed"
    train(config.replace(steps=10, compile="on"), out=resumed, quiet=True)
    train(resume=resumed, steps=20, quiet=True)
    straight = _weights(compiled)
    assert all(torch.equal(value, straight[key]) for key, value in _weights(resumed).items())
    untimed = [[{k: v for k, v in r.items() if k != "time"} for r in _losses(run)] for run in (resumed, compiled)]
    assert untimed[0] == untimed[1]

"""The run's log writers: log.jsonl, and the same scalars as TensorBoard event files with --tensorboard."""

from __future__ import annotations

import sys

import pytest

from introvae import Config, train
from introvae.errors import UserError
from introvae.rundir import RunDir
from introvae.runlog import RunLog, read_log, tensorboard_scalars


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows: tag -> [(step, value)], read with TensorBoard's own reader (which applies purges)."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    reader = event_accumulator.EventAccumulator(str(log_dir), size_guidance={event_accumulator.SCALARS: 0})
    reader.Reload()
    return {tag: [(event.step, event.value) for event in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}


def test_scalars_of_a_record_are_its_finite_numbers():
    record = {"step": 5, "kl_real": 3.5, "ae": float("nan"), "ok": True, "note": "text", "time": 1.25}
    assert tensorboard_scalars(record) == {"kl_real": 3.5, "time": 1.25}
    event = {"step": 9, "event": "rollback", "to_step": 4, "lr_scale": 0.5}
    assert tensorboard_scalars(event) == {"rollback/to_step": 4.0, "rollback/lr_scale": 0.5}


def test_without_tensorboard_only_log_jsonl_is_written(tmp_path):
    log = RunLog(RunDir(tmp_path).log)
    log.append({"step": 1, "kl_real": 2.0})
    log.append({"step": 2, "kl_real": 3.0})
    assert read_log(tmp_path / "log.jsonl") == [{"step": 1, "kl_real": 2.0}, {"step": 2, "kl_real": 3.0}]
    assert not (RunDir(tmp_path).tensorboard).exists()


def test_tensorboard_gets_the_records_and_steps_going_back_replace_the_abandoned_ones(tmp_path):
    pytest.importorskip("tensorboard")
    log = RunLog(RunDir(tmp_path).log, RunDir(tmp_path).tensorboard)
    for step in (10, 20, 30):
        log.append({"step": step, "kl_real": float(step), "ae": 100.0 - step})
    # A roll-back (or a resume) to step 10: steps 20 and 30 are trained again, with other values.
    log.append({"step": 20, "event": "rollback", "to_step": 10, "lr_scale": 0.5})
    for step in (20, 30, 40):
        log.append({"step": step, "kl_real": step + 0.5, "ae": 50.0})
    log.close()
    scalars = _scalars(RunDir(tmp_path).tensorboard)
    assert scalars["kl_real"] == [(10, 10.0), (20, 20.5), (30, 30.5), (40, 40.5)]
    assert scalars["ae"] == [(10, 90.0), (20, 50.0), (30, 50.0), (40, 50.0)]
    assert scalars["rollback/lr_scale"] == [(20, 0.5)]
    assert len(read_log(tmp_path / "log.jsonl")) == 7  # log.jsonl gets every record as it comes


@pytest.mark.slow
def test_training_with_tensorboard_logs_what_log_jsonl_holds(tmp_path, tiny_config):
    pytest.importorskip("tensorboard")
    run = train(tiny_config(steps=3, tensorboard=True), out=tmp_path / "r", quiet=True)
    records = read_log(run / "log.jsonl")
    scalars = _scalars(RunDir(run).tensorboard)
    assert [step for step, _ in scalars["kl_real"]] == [r["step"] for r in records] == [1, 2, 3]
    for key in ("kl_real", "ae", "loss_encoder", "loss_generator"):
        assert [value for _, value in scalars[key]] == pytest.approx([r[key] for r in records], rel=1e-6)
    # The choice is part of the run's config, and resuming keeps writing beside log.jsonl.
    assert Config.load(run / "config.json").run.tensorboard is True
    train(resume=run, steps=4, quiet=True)
    assert [step for step, _ in _scalars(RunDir(run).tensorboard)["kl_real"]] == [1, 2, 3, 4]


@pytest.mark.slow
def test_tensorboard_can_be_turned_on_when_resuming(tmp_path, tiny_config):
    pytest.importorskip("tensorboard")
    run = train(tiny_config(steps=2, checkpoint_every=2), out=tmp_path / "r", quiet=True)
    assert not (RunDir(run).tensorboard).exists()
    train(resume=run, steps=4, tensorboard=True, quiet=True)
    assert [step for step, _ in _scalars(RunDir(run).tensorboard)["ae"]] == [3, 4]  # from where it was turned on


def test_tensorboard_without_the_package_is_a_one_sentence_error(tmp_path, monkeypatch, tiny_config):
    # None in sys.modules makes `import` raise ImportError, as on a machine without the package.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(UserError, match=r"--tensorboard needs the tensorboard package: install it with `pip install "
                                        r"tensorboard`") as error:
        train(tiny_config(steps=1, tensorboard=True), out=tmp_path / "r", quiet=True)
    assert str(error.value).count(". ") == 0 and str(error.value).endswith(".")
    assert not (tmp_path / "r").exists()  # refused before the run directory is written
    with pytest.raises(UserError, match="pip install tensorboard"):
        RunLog(RunDir(tmp_path).log, RunDir(tmp_path).tensorboard)

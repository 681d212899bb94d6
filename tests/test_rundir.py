"""The run directory's layout (introvae.rundir.RunDir): the names a training run writes, found through one class."""

import json

from introvae import Config, train
from introvae.plot import draw_run_dynamics
from introvae.rundir import RunDir


def test_a_trained_run_holds_every_name_of_the_layout(tmp_path, tiny_config, read_chart):
    run = RunDir(train(tiny_config(steps=2, checkpoint_every=1, grid_every=1), out=tmp_path / "r", quiet=True))
    assert run.holds_run() and not RunDir(tmp_path / "elsewhere").holds_run()
    assert Config.load(run.config).optim.steps == 2 and set(json.loads(run.split.read_text())) >= {"train"}
    assert [r["step"] for r in map(json.loads, run.log.read_text().splitlines()) if "kl_real" in r][-1] == 2
    assert run.checkpoint_steps()[-1] == run.latest_step() == 2
    assert run.model_weights(2).is_file() and run.train_state(2).is_file()
    assert run.grid(1).is_file() and run.grid(2).parent == run.grids
    for picture in (run.samples, run.reconstructions, run.interpolation):
        assert picture.stat().st_size > 0
    read_chart(run.dynamics)
    assert run.eval_report(2) == run.path / "eval" / "eval-00000002.json"  # written by `introvae evaluate`


def test_draw_dynamics_redraws_from_the_log_alone(tmp_path, read_chart):
    run = RunDir(tmp_path)
    records = [{"step": s, "kl_real": 30.0 - s, "ae": 50.0 / s} for s in range(1, 40)]
    run.log.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = draw_run_dynamics(run, tmp_path / "elsewhere.png")  # no config.json: the panels of whatever the log holds
    assert out == tmp_path / "elsewhere.png" and not run.dynamics.exists()
    read_chart(out)

"""Data-parallel training with torchrun on the CPU (gloo): identical models on every rank, exactly the result of one
process on the same global batch where nothing else differs, and resuming with a different number of processes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from introvae.runlog import read_log

pytestmark = pytest.mark.slow  # every test starts torchrun processes (gloo)

WORKER = Path(__file__).parent / "helpers" / "ddp_worker.py"
EXACT = Path(__file__).parent / "helpers" / "ddp_exact.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode and "in use" in result.stderr:  # the free port was taken in between: once more
        command[command.index("--master_port") + 1] = str(_free_port())
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("model", ["introvae", "avae"])
def test_two_ranks_hold_the_same_model(tmp_path, model):
    # avae: its PID controller's k is updated from each rank's own batch, so the error is averaged over the ranks
    # first; without that, k (and then the losses) would drift apart.
    _torchrun(2, str(WORKER), str(tmp_path), "4", model)
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # parameters and batch-norm statistics
    state0, state1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert state0 == state1
    if model == "avae":  # the controller saw errors: the equality above is not that of two untouched states
        assert any(error != 0.0 for error in state0["errors"])



def test_averaged_gradients_equal_one_process_on_the_global_batch(tmp_path):
    # Exact data parallelism, checked where nothing else differs: MLPs without batch-norm, fixed noise.
    _torchrun(2, str(EXACT), str(tmp_path / "rankRANK.safetensors"))
    subprocess.run([sys.executable, str(EXACT), str(tmp_path / "single.safetensors")], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    single, rank0, rank1 = (load_file(tmp_path / f"{n}.safetensors") for n in ("single", "rank0", "rank1"))
    for key in single:
        assert torch.equal(rank0[key], rank1[key])
        torch.testing.assert_close(rank0[key], single[key], rtol=1e-5, atol=1e-6)


def test_torchrun_cli_writes_one_run_and_resumes_with_one_process(tmp_path, tiny_cli):
    run = tmp_path / "run"
    _torchrun(2, "-m", "introvae", "train", "--out", str(run), "--steps", "4",
              *tiny_cli(batch_size=8, builtin_count=64, warmup_steps=1, checkpoint_every=2), "--quiet")
    records = [r for r in read_log(run / "log.jsonl") if "loss_encoder" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # written once, by rank 0
    from introvae.cli import main

    assert main(["train", "--resume", str(run), "--steps", "6", "--quiet"]) == 0
    assert [r["step"] for r in read_log(run / "log.jsonl") if "loss_encoder" in r] == [1, 2, 3, 4, 5, 6]
    assert json.loads((run / "config.json").read_text())["optim"]["batch_size"] == 8


def test_a_global_batch_that_does_not_split_over_the_ranks_is_an_error(tmp_path, tiny_cli):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), "-m", "introvae", "train", "--out", str(tmp_path / "r"), "--steps", "2",
         *tiny_cli(batch_size=7, builtin_count=64, warmup_steps=1), "--quiet"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    # Each rank says it in one sentence (torchrun then reports the failed children in its own words).
    assert result.returncode != 0
    assert "introvae: error: --batch-size 7" in result.stderr

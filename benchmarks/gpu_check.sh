#!/usr/bin/env bash
# The checks that need a GPU, in one script, for a lent GPU machine (the device tool; CI never runs this):
#
#   bash benchmarks/gpu_check.sh speed    # train_speed.py at 64x64 and 256x256, fp32 and bf16, batch 32 and 256;
#                                         # then torchrun over every GPU (NCCL from two GPUs on; one process
#                                         # forms no process group): train, then resume
#   bash benchmarks/gpu_check.sh quality  # quality.py runs side by side on the GPU (see QUALITY_RUNS below)
#   bash benchmarks/gpu_check.sh compile  # train_speed.py eager, compiled and compiled with CUDA graphs (--compile),
#                                         # at 64x64 with batch 32 and at 256x256; then a short --compile on run
#                                         # and its resume. Without a GPU it says so and exits 0.
#
# Writes under ${OUT:-benchmarks/results/gpu}: JSON of each benchmark and logs, packed into one .tgz. Runs with the
# machine's own python3 and torch (PYTHONPATH=src), so nothing is installed. Each part continues after a failure of
# another, so one broken part does not cost the rest of a lease.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$root/benchmarks/results/gpu}"
work="$out/work"
mkdir -p "$work"
export PYTHONPATH="$root/src" PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
device="${DEVICE:-cuda}"
cd "$root"

speed() {
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv
    "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
    "$py" benchmarks/train_speed.py --device cuda --sizes 64 256 --steps 10 --repeats 5 \
        --out "$work/train_speed_gpu_b32.json" 2>&1 | tee "$work/train_speed_b32.log"
    "$py" benchmarks/train_speed.py --device cuda --sizes 64 --batch 256 --steps 10 --repeats 5 \
        --out "$work/train_speed_gpu_b256.json" 2>&1 | tee "$work/train_speed_b256.log"
    # torchrun with one process per GPU: 300 steps, then a resume to 400 steps.
    local run="$work/nccl-run" gpus
    gpus="$(nvidia-smi -L | wc -l)"
    rm -rf "$run"
    "$py" -m torch.distributed.run --nproc_per_node "$gpus" -m introvae train --data builtin --preset builtin-32 \
        --steps 300 --device cuda --out "$run" 2>&1 | tee "$work/nccl_train.log"
    "$py" -m torch.distributed.run --nproc_per_node "$gpus" -m introvae train --resume "$run" --steps 400 \
        2>&1 | tee "$work/nccl_resume.log"
    ls "$run" "$run/checkpoints" | tee "$work/nccl_files.txt"
    rm -rf "$run/checkpoints"  # the pictures and logs come back; the weights are not needed
}

compile() {
    if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        echo "gpu_check.sh compile: no CUDA GPU here, so no GPU figures (the CPU ones: python benchmarks/train_speed.py --compile)"
        return 0
    fi
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv
    "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
    # bf16 only: the GPU targets are bf16 (the plain fp32 step is timed beside it as the "x plain" reference).
    "$py" benchmarks/train_speed.py --device cuda --sizes 64 --precisions bf16 --steps 10 --repeats 5 \
        --compile default reduce-overhead --out "$work/train_speed_compile_b32.json" 2>&1 | tee "$work/compile_b32.log"
    "$py" benchmarks/train_speed.py --device cuda --sizes 256 --precisions bf16 --steps 5 --repeats 3 \
        --compile default reduce-overhead --out "$work/train_speed_compile_256.json" 2>&1 | tee "$work/compile_256.log"
    # A compiled run (CUDA graphs), then resumed eagerly and compiled again: the first lines and the compile events.
    local run="$work/compile-run"
    rm -rf "$run"
    "$py" -m introvae train --data builtin --preset builtin-32 --steps 300 --device cuda --compile on --out "$run" \
        2>&1 | tee "$work/compile_train.log"
    "$py" -m introvae train --resume "$run" --steps 400 --compile off 2>&1 | tee "$work/compile_resume_eager.log"
    "$py" -m introvae train --resume "$run" --steps 500 --compile on 2>&1 | tee "$work/compile_resume.log"
    grep '"event"' "$run/log.jsonl" | tee "$work/compile_events.jsonl"
    rm -rf "$run/checkpoints"
}

# name | quality.py options: each runs in its own process, all at once (the GPU is shared; steps are reported).
QUALITY_RUNS=(
    "introvae-light|--models introvae"
    "vae-light|--models vae"
    "introvae-appb64|--models introvae --set arch=\"appb\" base_channels=64"
    "soft-introvae|--models soft-introvae"
)

quality() {
    local budget="${BUDGET_S:-150}" pids=()
    for spec in "${QUALITY_RUNS[@]}"; do
        local name="${spec%%|*}" options="${spec#*|}"
        # shellcheck disable=SC2086  # options are words on purpose
        OMP_NUM_THREADS=4 "$py" benchmarks/quality.py --data builtin --device "$device" --precisions bf16 \
            --seeds 0 --samples "${SAMPLES:-2000}" --budget-s "$budget" $options \
            --out "$work/quality-$name.json" --pictures "$work/pictures-$name" >"$work/quality-$name.log" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}"
    tail -n 12 "$work"/quality-*.log
}

for part in "$@"; do
    "$part"
done
tar czf "$out/gpu_check-$(date +%H%M%S).tgz" -C "$out" work && rm -rf "$work"
ls -la "$out"

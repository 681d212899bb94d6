"""Training speed of the library's IntroVAE and Soft-IntroVAE steps against the plain Algorithm-1 step.

Throughput, GFLOP/s and the share of this machine's 3x3 convolution peak, per model, image size and precision.

    python benchmarks/train_speed.py [--sizes 32 64] [--models introvae soft-introvae] [--precisions fp32 bf16]
                                     [--steps 5] [--repeats 5] [--device auto] [--arch appb] [--widths 64 256]
                                     [--batch 32] [--compile [MODE ...]] [--out FILE.json]

One network configuration (App. B, base width 64, widths up to 256, z = 128, batch 32; `--arch light --widths 32
256` times the demo's networks) at each size. For every (model, size)
one child process builds both steps:

* plain: the step as the authors' code writes it, here in this file: fp32, NCHW, one call per forward pass,
  torch.optim.Adam with its default implementation, the encoder updated first and the generator's loss computed with
  the updated encoder;
* library: `introvae.train.Trainer.train_step`, once per precision (a precision the library refuses is reported as
  skipped, with its reason).

The timings are interleaved (plain, then each precision of the library, `repeats` times) so that a slow spell of a
shared machine hits all of them alike; each timing is `steps` steps after two untimed ones, and the median is
reported. ratio = library images/s / plain images/s (above 1 the library is faster). GFLOP/s divides the floating
point operations of one plain step (counted once by torch's FlopCounterMode; the library does the same arithmetic)
by the seconds per step. The peak is the best of a 3x3 conv's forward + backward (input and weight gradients) over
a few shapes, NCHW and channels_last, in fp32 and, where the device has native bf16, in bf16, measured in a child
process of its own (on CUDA larger shapes, and the rate of an 8192^3 matrix product, the figure quoted as a GPU's
peak; cuDNN runs "fp32" convolutions as TF32 by default, in both steps). `--batch` times another batch size (a GPU
needs more than 32 images per step to be busy). Peak memory is per (model, size) process: on CUDA the peak of allocated
GPU memory, on CPU the peak resident set size (Python and torch included; the baseline before any network is built is
reported too).

`--compile` adds the library's step compiled (`introvae train --compile on`), from the same initial weights, in each
torch.compile mode asked for ("default"; "reduce-overhead", CUDA graphs; the flag alone: the mode --compile on picks
on the device). Its trainer first takes steps until one compiles nothing; the compile cost is those steps' time
beyond that of as many compiled steps, and the break-even step is that cost over the time a compiled step saves
against the eager one (never, when it saves none). The compiled steps' timings are interleaved with the others, and a
second table sets eager and compiled side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from machine import cpu_name  # benchmarks/machine.py: this script's folder is on sys.path
from torch import Tensor, nn
from torch.nn import functional as F

from introvae.precision import native_bf16

BATCH = 32
NETWORK = {"channels": 3, "latent_dim": 128, "base_channels": 64, "max_channels": 256}
# Loss weights of both steps: IntroVAE's alpha, beta, m of the built-in preset; Soft-IntroVAE's authors' defaults.
WEIGHTS = {"alpha": 0.25, "beta": 2.0, "margin": 35.0, "beta_kl": 1.0, "beta_rec": 1.0, "beta_neg": 256.0,
           "gamma_r": 1e-8}
LR = 2e-4  # the learning rate of both papers; it does not change the cost of a step
# The library's options besides model, size and precision: warm-up off so every timed step is a full adversarial
# step, and nothing written to the run directory during the steps.
LIBRARY = {**NETWORK, **WEIGHTS, "batch_size": BATCH, "warmup_steps": 0, "steps": 10**9, "grid_every": 0,
           "checkpoint_every": 0, "builtin_count": 1024, "test_fraction": 0.0}
PEAK_SHAPES = ((128, 16), (256, 8))  # (channels in = out, height = width) of the 3x3 conv, batch BATCH
# A GPU is not filled by those: its peak is the best of larger convolutions (the 64x64 and 256x256 nets' widest
# layers), and its bf16 matrix-product rate is measured too, the figure vendors quote as the chip's peak.
PEAK_SHAPES_CUDA = ((64, 128), (128, 64), (256, 32))
MATMUL_SIZE_CUDA = 8192
PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PEAK_TIMING_S = 0.1  # each conv timing runs at least this long, so a fast device is not timed on one launch
COMPILE_WARMUP_STEPS = 6  # at most this many compiled steps before timing; new graphs stop appearing after 2-3


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _synchronizer(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _time(fn: Callable[[], object], count: int, sync: Callable[[], None]) -> float:
    """Seconds for `count` calls of fn, the device's queue drained before and after."""
    sync()
    start = time.perf_counter()
    for _ in range(count):
        fn()
    sync()
    return time.perf_counter() - start


# ---- the plain step


def kl_per_sample(mu: Tensor, logvar: Tensor) -> Tensor:
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def sse_per_image(x_rec: Tensor, x: Tensor) -> Tensor:
    return (x_rec - x).pow(2).flatten(1).sum(1)


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


@dataclass
class Plain:
    encoder: nn.Module
    generator: nn.Module
    encoder_optimizer: torch.optim.Optimizer
    generator_optimizer: torch.optim.Optimizer

    def update_encoder(self, loss: Tensor) -> None:
        # The generator's loss reuses this graph (L_AE, or the real images' SSE), so it is kept.
        loss.backward(inputs=list(self.encoder.parameters()), retain_graph=True)
        self.encoder_optimizer.step()
        self.encoder_optimizer.zero_grad()

    def update_generator(self, loss: Tensor) -> None:
        loss.backward(inputs=list(self.generator.parameters()))
        self.generator_optimizer.step()
        self.generator_optimizer.zero_grad()


def build_plain(config: object, device: torch.device) -> Plain:
    from introvae.nets import build_networks, init_weights

    encoder, generator = build_networks(config)
    # Initialised in the library's order from the library's seed, so both steps start from the same weights.
    init_weights(nn.ModuleDict({"encoder": encoder, "generator": generator}), torch.Generator().manual_seed(0))
    for network in (encoder, generator):
        network.memory_format = torch.contiguous_format  # NCHW, as the authors' code (the library runs channels_last)
        network.to(device)
    return Plain(encoder, generator, torch.optim.Adam(encoder.parameters(), lr=LR),
                 torch.optim.Adam(generator.parameters(), lr=LR))


def introvae_step(net: Plain, x: Tensor) -> None:
    """Algorithm 1 of Huang et al. 2018 with Eq. 11-12: per-sample hinge, half-SSE L_AE, batch means."""
    alpha, beta, margin = WEIGHTS["alpha"], WEIGHTS["beta"], WEIGHTS["margin"]
    mu, logvar = net.encoder(x)
    x_r = net.generator(reparameterize(mu, logvar))
    x_p = net.generator(torch.randn_like(mu))
    ae = 0.5 * sse_per_image(x_r, x).mean()
    kl_r = kl_per_sample(*net.encoder(x_r.detach()))
    kl_p = kl_per_sample(*net.encoder(x_p.detach()))
    hinge = torch.relu(margin - kl_r).mean() + torch.relu(margin - kl_p).mean()
    net.update_encoder(kl_per_sample(mu, logvar).mean() + alpha * hinge + beta * ae)
    kl_fake = kl_per_sample(*net.encoder(x_r)).mean() + kl_per_sample(*net.encoder(x_p)).mean()
    net.update_generator(alpha * kl_fake + beta * ae)


def soft_introvae_step(net: Plain, x: Tensor) -> None:
    """Daniel & Tamar 2021, the loss of introvae/objectives/soft_introvae.py written out."""
    beta_kl, beta_rec, beta_neg, gamma_r = (WEIGHTS[k] for k in ("beta_kl", "beta_rec", "beta_neg", "gamma_r"))
    scale = 1.0 / x[0].numel()
    mu, logvar = net.encoder(x)
    x_r = net.generator(reparameterize(mu, logvar))
    x_p = net.generator(torch.randn_like(mu))
    sse_real = sse_per_image(x_r, x).mean()
    exp_elbo = torch.zeros((), device=x.device)
    for fake in (x_r.detach(), x_p.detach()):
        mu_f, logvar_f = net.encoder(fake)
        sse_f = sse_per_image(net.generator(reparameterize(mu_f, logvar_f)), fake)
        elbo_f = beta_rec * sse_f + beta_neg * kl_per_sample(mu_f, logvar_f)
        exp_elbo = exp_elbo + torch.exp(-2.0 * scale * elbo_f).mean()
    net.update_encoder(scale * (beta_rec * sse_real + beta_kl * kl_per_sample(mu, logvar).mean()) + 0.25 * exp_elbo)
    kl_fake = torch.zeros((), device=x.device)
    sse_fake = torch.zeros((), device=x.device)
    for fake in (x_r, x_p):
        mu_f, logvar_f = net.encoder(fake)
        kl_fake = kl_fake + kl_per_sample(mu_f, logvar_f).mean()
        z_f = reparameterize(mu_f, logvar_f).detach()
        sse_fake = sse_fake + sse_per_image(net.generator(z_f), fake.detach()).mean()
    net.update_generator(scale * (beta_rec * sse_real + 0.5 * beta_kl * kl_fake + 0.5 * gamma_r * beta_rec * sse_fake))


PLAIN_STEPS = {"introvae": introvae_step, "soft-introvae": soft_introvae_step}


# ---- child processes


def warm_up_compiled(trainer: object, sync: Callable[[], None]) -> dict:
    """Steps of a compiled trainer until one compiles nothing (at most COMPILE_WARMUP_STEPS): their wall times and
    the seconds torch.compile reported, so the compile time can be set against the time a compiled step saves."""
    from introvae.compiling import CompileClock

    step_seconds, compile_seconds = [], 0.0
    for _ in range(COMPILE_WARMUP_STEPS):
        before = CompileClock.seconds()
        step_seconds.append(_time(trainer.train_step, 1, sync))
        compiled = CompileClock.seconds() - before
        compile_seconds += compiled
        if compiled == 0 and len(step_seconds) > 1:
            break
    return {"warmup_step_seconds": step_seconds, "compile_seconds": compile_seconds,
            "failure": trainer.engine.compile_failure}


def measure_steps(model: str, size: int, precisions: list[str], steps: int, repeats: int, device_name: str,
                  networks: dict, batch: int, compile_modes: list[str] = ()) -> dict:
    import dataclasses

    from torch.utils.flop_counter import FlopCounterMode

    from introvae import Config
    from introvae.data import open_data
    from introvae.errors import UserError
    from introvae.images import to_float
    from introvae.model import resolve_device
    from introvae.nets import count_parameters
    from introvae.runspec import RunSpec
    from introvae.train import Trainer

    baseline = _rss_mib()
    device = resolve_device(device_name)
    sync = _synchronizer(device)
    data = open_data("builtin", size, 3, 0.0, 0, builtin_count=LIBRARY["builtin_count"])
    plain_config = Config(model=model, image_size=size, device=device_name,
                          **{**LIBRARY, **networks, "batch_size": batch})
    plain = build_plain(plain_config, device)
    x = to_float(data.train.get(torch.arange(batch))).to(device)
    step = PLAIN_STEPS[model]

    def plain_step() -> None:
        step(plain, x)

    with FlopCounterMode(display=False) as counter:
        plain_step()
    flops = counter.get_total_flops()

    with tempfile.TemporaryDirectory() as tmp:
        trainers: dict[str, Trainer] = {}
        compiled: dict[tuple[str, str], Trainer] = {}  # (precision, torch.compile mode)
        skipped: dict[str, str] = {}
        for precision in precisions:
            try:
                config = plain_config.replace(precision=precision, compile="off").validate()
                trainers[precision] = Trainer(config, Path(tmp) / precision, data, quiet=True)
                for mode in compile_modes:
                    # The spec of --compile on, in the mode asked for (CUDA graphs or not), from the same weights.
                    spec = dataclasses.replace(RunSpec.resolve(config.replace(compile="on"), 3), compile_mode=mode)
                    run_dir = Path(tmp) / f"{precision}-{mode}"
                    run_dir.mkdir()  # its compile times are logged
                    compiled[precision, mode] = Trainer(spec, run_dir, data, quiet=True)
            except UserError as error:
                skipped[precision] = str(error)
        for fn in [plain_step] + [t.train_step for t in trainers.values()]:
            _time(fn, 2, sync)  # warm-up: allocator, oneDNN/cuDNN kernel choice, Adam's state
        warmups = {key: warm_up_compiled(trainer, sync) for key, trainer in compiled.items()}
        plain_timings: list[float] = []
        library_timings: dict[str, list[float]] = {p: [] for p in trainers}
        compiled_timings: dict[tuple[str, str], list[float]] = {key: [] for key in compiled}
        for _ in range(repeats):
            plain_timings.append(_time(plain_step, steps, sync))
            for precision, trainer in trainers.items():
                library_timings[precision].append(_time(trainer.train_step, steps, sync))
                for mode in compile_modes:
                    if (precision, mode) in compiled:
                        compiled_timings[precision, mode].append(_time(compiled[precision, mode].train_step, steps,
                                                                       sync))

    def summary(timings: list[float]) -> dict:
        per_step = statistics.median(timings) / steps
        return {"seconds_per_step_median": per_step, "images_per_second": batch / per_step,
                "gflops_per_second": flops / per_step / 1e9, "timings_s": timings}

    plain_summary = summary(plain_timings)
    library: dict[str, dict] = {p: {"skipped": reason} for p, reason in skipped.items()}
    for precision, timings in library_timings.items():
        result = summary(timings)
        result["speed_vs_plain"] = result["images_per_second"] / plain_summary["images_per_second"]
        result["compiled"] = {}
        library[precision] = result
    for (precision, mode), timings in compiled_timings.items():
        eager, result, warmup = library[precision], summary(timings), warmups[precision, mode]
        result.update(warmup)
        result["speed_vs_eager"] = result["images_per_second"] / eager["images_per_second"]
        # What compiling cost the run: the warm-up steps' time beyond that of as many compiled steps.
        cost = (sum(warmup["warmup_step_seconds"])
                - len(warmup["warmup_step_seconds"]) * result["seconds_per_step_median"])
        saved = eager["seconds_per_step_median"] - result["seconds_per_step_median"]
        result["compile_cost_seconds"] = cost
        result["break_even_step"] = math.ceil(cost / saved) if saved > 0 else None  # None: never
        eager["compiled"][mode] = result
    cuda = device.type == "cuda"
    return {
        "model": model,
        "image_size": size,
        "device": str(device),
        "batch_size": batch,
        "parameters": count_parameters(plain.encoder) + count_parameters(plain.generator),
        "flops_per_step": flops,
        "plain": plain_summary,
        "library": {p: library[p] for p in precisions},
        "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mib(),
        "memory_kind": "cuda max_memory_allocated" if cuda else "process peak RSS",
        "baseline_rss_mib": baseline,
        "torch_threads": torch.get_num_threads(),
    }


def measure_peaks(device_name: str) -> dict:
    """Best GFLOP/s of a 3x3 conv forward + backward (input and weight gradients) per dtype, over shapes and layouts."""
    from introvae.model import resolve_device

    device = resolve_device(device_name)
    sync = _synchronizer(device)
    dtypes = ["fp32", "bf16"] if native_bf16(device) else ["fp32"]
    shapes = PEAK_SHAPES_CUDA if device.type == "cuda" else PEAK_SHAPES
    cases = []
    for dtype_name in dtypes:
        dtype = PEAK_DTYPES[dtype_name]
        for channels_last in (False, True):
            layout = torch.channels_last if channels_last else torch.contiguous_format
            for channels, hw in shapes:
                x = torch.randn(BATCH, channels, hw, hw, device=device, dtype=dtype).contiguous(memory_format=layout)
                w = torch.randn(channels, channels, 3, 3, device=device, dtype=dtype).contiguous(memory_format=layout)
                x.requires_grad_(True)
                w.requires_grad_(True)
                grad = torch.randn_like(F.conv2d(x, w, padding=1))  # keeps the output's layout

                def forward_backward() -> None:
                    torch.autograd.grad(F.conv2d(x, w, padding=1), (x, w), grad)

                _time(forward_backward, 2, sync)
                count = max(1, math.ceil(PEAK_TIMING_S / _time(forward_backward, 1, sync)))
                seconds = min(_time(forward_backward, count, sync) for _ in range(3)) / count
                flops = 3 * 2 * BATCH * channels * channels * 9 * hw * hw
                cases.append({"dtype": dtype_name, "channels_last": channels_last, "channels": channels,
                              "height_width": hw, "gflops_per_second": flops / seconds / 1e9})
    best = {d: max((c for c in cases if c["dtype"] == d), key=lambda c: c["gflops_per_second"]) for d in dtypes}
    result = {"device": str(device), "best": best, "cases": cases, "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        result["gpu_name"] = torch.cuda.get_device_name(device)
        result["matmul_gflops_per_second"] = {d: _matmul_gflops(PEAK_DTYPES[d], device, sync) for d in dtypes}
    return result


def _matmul_gflops(dtype: torch.dtype, device: torch.device, sync: Callable[[], None]) -> float:
    """GFLOP/s of a large square matrix product on random data (the rate vendors quote as a GPU's peak)."""
    n = MATMUL_SIZE_CUDA
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    _time(lambda: a @ b, 3, sync)
    seconds = min(_time(lambda: a @ b, 10, sync) for _ in range(3)) / 10
    return 2 * n**3 / seconds / 1e9


# ---- the parent: one child per measurement, then the table


def _child(args: list[str]) -> dict:
    # stderr passes through, so a child's traceback is seen.
    out = subprocess.run([sys.executable, __file__, *args], check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def _peak_text(peak: dict) -> str:
    layout = "channels_last" if peak["channels_last"] else "NCHW"
    c, hw = peak["channels"], peak["height_width"]
    return f"{peak['gflops_per_second']:.1f} GFLOP/s ({layout}, {BATCH}x{c}x{hw}x{hw}, {c}->{c})"


def print_compiled(rows: list[dict]) -> None:
    """Eager against compiled, side by side: the library's step in each precision and torch.compile mode."""
    print(f"\n{'model':>14} {'size':>5} {'precision':>10} {'mode':>16} {'eager img/s':>12} {'compiled img/s':>15} "
          f"{'x eager':>8} {'compile s':>10} {'break-even step':>16}")
    for row in rows:
        for precision, eager in row["library"].items():
            for mode, result in eager.get("compiled", {}).items():
                head = f"{row['model']:>14} {row['image_size']:>5} {precision:>10} {mode:>16}"
                if result.get("failure"):
                    print(f"{head}  failed, ran eagerly: {result['failure']}")
                    continue
                even = result["break_even_step"]
                print(f"{head} {eager['images_per_second']:>12.1f} {result['images_per_second']:>15.1f} "
                      f"{result['speed_vs_eager']:>8.2f} {result['compile_cost_seconds']:>10.1f} "
                      f"{even if even is not None else 'never':>16}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--models", nargs="+", default=list(PLAIN_STEPS), choices=list(PLAIN_STEPS))
    parser.add_argument("--precisions", nargs="+",
                        help="the library's --precision values to time (default: fp32 bf16 where the device has "
                             "native bf16, else fp32)")
    parser.add_argument("--steps", type=int, default=5, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings of each step; the median is reported")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arch", default="appb", help="network family of both steps (--arch of introvae train)")
    parser.add_argument("--widths", type=int, nargs=2, default=[NETWORK["base_channels"], NETWORK["max_channels"]],
                        metavar=("BASE", "MAX"), help="base and maximum widths (default 64 256)")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"images per step (default {BATCH})")
    parser.add_argument("--compile", nargs="*", default=None, metavar="MODE", dest="compile_modes",
                        help="also time the library's step compiled (--compile on), in these torch.compile modes: "
                             "default, reduce-overhead (CUDA graphs); the flag alone: the mode --compile on picks "
                             "on this device")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_speed.json")
    parser.add_argument("--child-step", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--child-peaks", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    networks = {"arch": args.arch, "base_channels": args.widths[0], "max_channels": args.widths[1]}
    network_args = ["--arch", args.arch, "--widths", *map(str, args.widths)]
    if args.child_peaks:
        print(json.dumps(measure_peaks(args.device)))
        return
    if args.child_step:
        model, size = args.child_step
        print(json.dumps(measure_steps(model, int(size), args.precisions, args.steps, args.repeats, args.device,
                                       networks, args.batch, args.compile_modes or [])))
        return

    from introvae.model import resolve_device

    device = resolve_device(args.device)
    precisions = args.precisions or (["fp32", "bf16"] if native_bf16(device) else ["fp32"])
    compile_modes = args.compile_modes
    if compile_modes == []:  # the flag alone
        compile_modes = ["reduce-overhead" if device.type == "cuda" else "default"]
    compile_args = ["--compile", *compile_modes] if compile_modes else []
    peaks = _child(["--child-peaks", "--device", args.device])
    rows = [_child(["--child-step", model, str(size), "--precisions", *precisions, "--steps", str(args.steps),
                    "--repeats", str(args.repeats), "--device", args.device, "--batch", str(args.batch),
                    *network_args, *compile_args])
            for model in args.models for size in args.sizes]
    peak = {dtype: best["gflops_per_second"] for dtype, best in peaks["best"].items()}
    matmul_peak = peaks.get("matmul_gflops_per_second", {})
    for row in rows:
        for precision, result in row["library"].items():
            if "skipped" not in result and precision in peak:
                result["fraction_of_peak"] = result["gflops_per_second"] / peak[precision]
            if "skipped" not in result and precision in matmul_peak:
                result["fraction_of_matmul_peak"] = result["gflops_per_second"] / matmul_peak[precision]
        row["plain"]["fraction_of_peak"] = row["plain"]["gflops_per_second"] / peak["fp32"]  # plain is fp32

    print(f"3x3 conv forward + backward peak on {peaks['device']}, {peaks['torch_threads']} threads:")
    for dtype, best in peaks["best"].items():
        print(f"  {dtype}: {_peak_text(best)}")
    for dtype, rate in matmul_peak.items():
        print(f"  {dtype} {MATMUL_SIZE_CUDA}^3 matrix product ({peaks['gpu_name']}): {rate:.0f} GFLOP/s")
    print(f"{'model':>14} {'size':>5} {'plain img/s':>12} {'precision':>10} {'library img/s':>14} {'ratio':>6} "
          f"{'GFLOP/s':>8} {'% peak':>7} {'peak MiB':>9}" + (" % matmul peak" if matmul_peak else ""))
    for row in rows:
        head = f"{row['model']:>14} {row['image_size']:>5} {row['plain']['images_per_second']:>12.1f}"
        for precision, result in row["library"].items():
            if "skipped" in result:
                print(f"{head} {precision:>10}  skipped: {result['skipped']}")
                continue
            share = f"{100 * result['fraction_of_peak']:.1f}" if "fraction_of_peak" in result else "-"
            print(f"{head} {precision:>10} {result['images_per_second']:>14.1f} {result['speed_vs_plain']:>6.2f} "
                  f"{result['gflops_per_second']:>8.1f} {share:>7} {row['peak_memory_mib']:>9.0f}"
                  + (f" {100 * result['fraction_of_matmul_peak']:>13.1f}" if "fraction_of_matmul_peak" in result
                     else ""))
    if compile_modes:
        print_compiled(rows)
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "config": {**LIBRARY, **networks}, "lr": LR, "machine": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "cpu_capabilities": {k: capabilities.get(k) for k in ("avx512_bf16", "amx_bf16", "avx2")},
        "steps": args.steps, "repeats": args.repeats, "batch_size": args.batch, "compile_modes": compile_modes or [],
        "cpu_model": cpu_name(), "conv_peaks": peaks,
        "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

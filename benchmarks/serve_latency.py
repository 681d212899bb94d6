"""Latency of the explorer page's endpoints (`introvae serve`): what a person waits for after moving a slider.

    python benchmarks/serve_latency.py RUN_DIR [--requests 50] [--threads N] [--out FILE.json]

Each endpoint is called `--requests` times through Flask's test client (the whole request: JSON parsing, the lock,
encoding and decoding through the networks, the PNG and base64 encoding of the answer; no network stack, whose
loopback round trip adds well under a millisecond), after 3 untimed calls. Prints the median and the 90th
percentile per endpoint, and writes them with the machine's description to benchmarks/results/serve_latency.json
(or --out). The slider values and seeds change from call to call, as they do while a slider is dragged.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from introvae.serve import Explorer, create_app


def _upload_png(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size * 3, size * 2), (240, 120, 20)).save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--requests", type=int, default=50, help="timed requests per endpoint (default: 50)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve_latency.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()[0]  # other jobs on the machine slow the requests down; the JSON records them
    started = time.perf_counter()
    explorer = Explorer.open(args.run_dir, device=args.device)
    startup_s = time.perf_counter() - started
    size = explorer.model.config.dataset.image_size
    client = create_app(explorer).test_client()
    upload = client.post("/api/upload", data={"image": (io.BytesIO(_upload_png(size)), "bench.png")}).get_json()
    first_pc = next((d.key for d in explorer.directions if d.kind == "pca"), None)

    def offsets(i: int) -> dict:
        return {first_pc: round(-3 + 6 * (i % 50) / 49, 3)} if first_pc else {}

    calls = {
        "decode (slider, a sample)": lambda i: client.post(
            "/api/decode", json={"endpoint": {"seed": 0, "index": 0}, "offsets": offsets(i)}),
        "decode (slider, an upload)": lambda i: client.post(
            "/api/decode", json={"endpoint": {"upload": upload["id"]}, "offsets": offsets(i)}),
        "samples (16, re-roll)": lambda i: client.get(f"/api/samples?seed={i}&count=16"),
        "interpolate (17 frames)": lambda i: client.post(
            "/api/interpolate", json={"a": {"seed": i}, "b": {"upload": upload["id"]}, "steps": 17}),
        "upload (encode, reconstruct, 16-sample scores)": lambda i: client.post(
            "/api/upload", data={"image": (io.BytesIO(_upload_png(size)), "b.png")}),
    }
    rows = []
    for name, call in calls.items():
        for i in range(3):
            call(i)
        times_ms = []
        for i in range(args.requests):
            t0 = time.perf_counter()
            response = call(i)
            times_ms.append((time.perf_counter() - t0) * 1000)
            if response.status_code != 200:
                print(f"{name}: status {response.status_code}: {response.get_json()}", file=sys.stderr)
                return 1
        times_ms.sort()
        rows.append({"endpoint": name, "requests": args.requests, "median_ms": round(statistics.median(times_ms), 2),
                     "p90_ms": round(times_ms[int(0.9 * (len(times_ms) - 1))], 2)})

    config = explorer.model.config
    networks = config.networks
    print(f"{args.run_dir}: {config.model}, {config.dataset.image_size} px, z = {networks.latent_dim}, "
          f"widths {networks.base_channels}-{networks.max_channels}; {torch.get_num_threads()} torch threads on "
          f"{args.device}; start-up {startup_s:.1f} s; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    width = max(len(r["endpoint"]) for r in rows)
    print(f"{'endpoint':<{width}}  median ms  p90 ms")
    for r in rows:
        print(f"{r['endpoint']:<{width}}  {r['median_ms']:>9.1f}  {r['p90_ms']:>6.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "run_dir": str(args.run_dir), "model": config.model, "image_size": config.dataset.image_size,
        "latent_dim": networks.latent_dim, "base_channels": networks.base_channels,
        "max_channels": networks.max_channels,
        "device": args.device, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "startup_s": round(startup_s, 2),
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}, "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

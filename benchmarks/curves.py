"""The judged curves of game.py's runs against minutes of this CPU, read at equal minutes (issue 29).

    python benchmarks/curves.py GAME.json [GAME.json ...] --costs STEP_COST.json [--at 3 6] [--out FIGURE.png]
                                [--leads NAME ...]

Why minutes from step costs and not the runs' own clocks: on a shared machine a run's clock counts the other jobs'
load too, so two runs trained at different times are not comparable by their clocks. `game.py --step-cost` times one
step of every lead round-robin in one process; here a checkpoint's seconds are its warm-up steps at the cost of the
VAE lead's step (the same networks and the same VAE step) plus its steps after the warm-up at the lead's own cost.

The figure draws, per lead, the median over seeds of legibility and FD against minutes (a band from the lowest to the
highest seed), for every judged column set present (the prior's, and the *_fitted columns of the run's density). The
table gives each lead at the minutes of `--at` (linear between checkpoints; a lead whose last checkpoint comes earlier
is left blank there), median and range over seeds. `--leads` keeps those leads only, in that order. Writes the figure
and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

VAE_LEAD = "vae-glyphs-32"  # its step is the warm-up step of the IntroVAE leads


def warmup_steps(lead: str) -> int:
    from game import LEADS, lead_config

    from introvae.objectives import build_objective

    return build_objective(lead_config(LEADS[lead], 0, 1)).warmup_steps


def minutes_at(lead: str, step: int, costs: dict[str, float]) -> float:
    warmup = min(step, warmup_steps(lead))
    return (warmup * costs[VAE_LEAD] + (step - warmup) * costs[lead]) / 60


def interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    """The value at x on the polyline through (x, y) points sorted by x; None outside them."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1] if points and abs(points[-1][0] - x) < 1e-9 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("games", nargs="+", type=Path)
    parser.add_argument("--costs", type=Path, required=True)
    parser.add_argument("--at", nargs="+", type=float, default=[], metavar="MINUTES")
    parser.add_argument("--columns", nargs="+", default=["legible_fitted", "fd_fitted", "class_cover_fitted",
                                                         "hf_ratio_fitted"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--leads", nargs="+", help="only these leads, in this order (default: every lead timed)")
    args = parser.parse_args()
    costs = json.loads(args.costs.read_text())["seconds_per_step"]
    # one row per (lead, seed, step): a later file's row replaces an earlier one's
    by_key = {(row["lead"], row["seed"], row["step"]): row for path in args.games
              for row in json.loads(path.read_text())["rows"]}
    rows = list(by_key.values())
    curves: dict[str, dict[int, list[tuple[float, dict]]]] = {}
    for row in rows:
        if row["lead"] not in costs or (args.leads and row["lead"] not in args.leads):
            continue
        minutes = minutes_at(row["lead"], row["step"], costs)
        curves.setdefault(row["lead"], {}).setdefault(row["seed"], []).append((minutes, row))
    for seeds in curves.values():
        for points in seeds.values():
            points.sort(key=lambda p: p[0])
    if args.leads:
        curves = {lead: curves[lead] for lead in args.leads if lead in curves}

    columns = [c for c in args.columns if any(c in row and row[c] != "" for row in rows)]
    if args.at:
        print("| lead | minutes | seeds | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 3))
        for lead, seeds in curves.items():
            for at in args.at:
                cells = []
                for column in columns:
                    values = [interpolate([(m, float(r[column])) for m, r in points if r.get(column, "") != ""], at)
                              for points in seeds.values()]
                    values = [v for v in values if v is not None]
                    cells.append(f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"
                                 if values else "")
                print(f"| {lead} | {at:g} | {len(seeds)} | " + " | ".join(cells) + " |")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.4))
        for axis, column in zip(axes, columns):
            for lead, seeds in curves.items():
                steps = sorted({r["step"] for points in seeds.values() for _, r in points})
                xs, mids, lows, highs = [], [], [], []
                for step in steps:
                    values = [float(r[column]) for points in seeds.values() for _, r in points
                              if r["step"] == step and r.get(column, "") != ""]
                    if values:
                        xs.append(minutes_at(lead, step, costs))
                        mids.append(statistics.median(values))
                        lows.append(min(values))
                        highs.append(max(values))
                line, = axis.plot(xs, mids, marker="o", markersize=3, label=f"{lead} ({len(seeds)} seeds)")
                axis.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15)
            axis.set_xlabel("minutes (1 thread, from step costs)")
            axis.set_title(column)
            axis.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        figure.tight_layout()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out, dpi=110)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

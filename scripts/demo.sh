#!/usr/bin/env bash
# The main job: set up, then train IntroVAE on the built-in glyphs (rendered digits, 32x32 gray; about 5 minutes on
# 2 CPU cores). Writes runs/demo-<time>/ with samples.png (codes from the run's sampler: a mixture fitted to the
# training images' codes, which training stores with its last checkpoint), reconstructions.png, interpolation.png,
# dynamics.png and checkpoints/, then samples-prior.png: codes from the prior N(0, I), the papers' sampling
# (`introvae sample --prior normal`). Extra arguments go to `introvae train` (e.g. --steps 200 for a quick look;
# --data shapes --preset builtin-32 for the coloured shapes).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
out="$root/runs/demo-$(date +%Y%m%d-%H%M%S)"
"$root/.venv/bin/introvae" train --preset glyphs-32 --out "$out" "$@"
"$root/.venv/bin/introvae" sample "$out" --prior normal --num 64 --out "$out/samples-prior.png"

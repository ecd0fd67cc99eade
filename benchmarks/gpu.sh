#!/usr/bin/env bash
# Every GPU benchmark of superpos, one after the other, on the first CUDA device; each writes
# benchmarks/results/<name>_cuda.txt next to its CPU result. Run from anywhere:
#
#     bash benchmarks/gpu.sh [MACHINTERP_DIR]
#
# MACHINTERP_DIR: a checkout of klindtlab/MachInterp (its mis.py and metric.py), the peer of the
# interpretability benchmark; without it that benchmark times superpos alone. Each line also runs on
# its own (copy it), which keeps every command under ten minutes on one H100.
set -euo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: these are the GPU benchmarks')"
python benchmarks/activations.py --device cuda --out "$R/activations_cuda.txt"
python benchmarks/interpretability.py --device cuda ${1:+--peer-path "$1"} --out "$R/interpretability_cuda.txt"
python benchmarks/directions.py --device cuda --output "$R/directions_cuda.txt"
python benchmarks/slowvae.py --device cuda
python benchmarks/cnn_analysis.py --out "$R/cnn_analysis_cuda.txt"         # cnn_analysis picks the GPU itself

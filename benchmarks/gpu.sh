#!/bin/bash
# The GPU measurements of docs/benchmarks.md, in one go on a CUDA machine that has PyTorch (no install:
# the package runs from src/). Sections go to $DOCS_COPY (default docs/benchmarks.md); merge a copy back
# with `python benchmarks/_common.py merge COPY`. Logs go to $LOGS (default /tmp).
#   bash benchmarks/gpu.sh tests|train|sweep5|sweep10|blocks|blocks-quality
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 RNNKIT_BENCH_DOCS=${DOCS_COPY:-$PWD/docs/benchmarks.md}
LOGS=${LOGS:-/tmp}
for what in "$@"; do case $what in
  cudatests) python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$LOGS/test_cuda.log" | tail -3 ;;
  tests)   # the CUDA tests, then the whole suite on this machine's torch
    python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$LOGS/test_cuda.log" | tail -3
    python3 -m pytest -q -p no:cacheprovider -n 8 tests 2>&1 | tee "$LOGS/tests.log" | tail -3 ;;
  train)   # rnnkit's Trainer vs the bare loop on the GPU, batch 64 (as on the CPU) and 256
    python3 benchmarks/bench_train.py --device cuda --steps 100 --warmup 10 --rounds 3 --threads 4 \
      2>&1 | tee "$LOGS/bench_train_cuda.log" | tail -16
    python3 benchmarks/bench_train.py --device cuda --batch 256 --cells lstm,gru --sizes 512,1024 --steps 100 \
      --warmup 10 --rounds 3 --threads 4 2>&1 | tee "$LOGS/bench_train_cuda_b256.log" | tail -8 ;;
  sweep5)  # recipes for a 5-minute CPU budget on Molière, at this machine's rates and 1.45x them
    python3 benchmarks/recipe_sweep.py sweep --corpus moliere --rates benchmarks/rates_cpu.json --budget 300 \
      --seeds 0,1 --jobs 14 2>&1 | tee "$LOGS/sweep5_x1.log" | tail -28
    python3 benchmarks/recipe_sweep.py sweep --corpus moliere --rates benchmarks/rates_cpu.json --budget 300 \
      --speedup 1.45 --seeds 0 --jobs 14 2>&1 | tee "$LOGS/sweep5_x1.45.log" | tail -28 ;;
  sweep10) # recipes for 10 minutes of CPU on Molière and Tiny Shakespeare
    for c in moliere shakespeare; do
      python3 benchmarks/recipe_sweep.py sweep --corpus $c --rates benchmarks/rates_cpu.json --budget 600 \
        --seeds 0 --jobs 14 2>&1 | tee "$LOGS/sweep10_$c.log" | tail -30
    done ;;
  blocks)  # scan blocks against cuDNN's GRU: training chars/s at 50 to 2,048 characters (64 K per step)
    python3 benchmarks/bench_blocks.py --device cuda --steps 30 --rounds 3 --chars 65536 \
      --seq-lens 50,256,1024,2048 --gen-chars 500 2>&1 | tee "$LOGS/bench_blocks_cuda.log" | tail -34 ;;
  blocks-quality)  # 3 minutes of each cell's recipe on Tiny Shakespeare at sequence length 256 (~11 min)
    BUDGET_S=180 python3 benchmarks/bench_blocks_quality.py ../shared/data/tinyshakespeare.txt \
      --label "Tiny Shakespeare, CUDA, 3 min, seq 256" -- --device cuda --seq-len 256 \
      2>&1 | tee "$LOGS/bench_blocks_quality_cuda.log" | tail -14 ;;
  *) echo "gpu.sh: unknown step $what (tests, train, sweep5, sweep10, blocks, blocks-quality)"; exit 2 ;;
esac; done

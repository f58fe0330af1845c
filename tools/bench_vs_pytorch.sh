#!/usr/bin/env bash
# Paired CPU training benchmark (issue 12): tfclf with oneDNN (its default), tfclf with
# TensorFlow's Eigen kernels, and the PyTorch reference (tools/pytorch_resnet20.py,
# same ResNet-20, 32x32x3, batch 128, float32), interleaved for ROUNDS rounds so machine
# drift hits all alike. On a CPU with native bfloat16 (what `--precision=auto` picks there)
# each round also pairs tfclf's mixed_bfloat16 with PyTorch's bfloat16 autocast.
# Usage: tools/bench_vs_pytorch.sh [ROUNDS] [TORCH_PYTHON]
set -uo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
torch_py="${2:-python}"
ref="${TFCLF_TORCH_BENCH:-tools/pytorch_resnet20.py}"
tf_args=(--model=resnet20 --size=32 --channels=3 --batch_size=128 --batches=20 --rounds=2 --peak_n=0)
grep -q avx512f /proc/cpuinfo && echo "machine: AVX-512" || echo "machine: AVX2 only"
grep -q -w amx_tile /proc/cpuinfo && echo "AMX: yes"
grep -m1 "model name" /proc/cpuinfo
bf16=0
grep -q -w 'avx512_bf16\|amx_bf16' /proc/cpuinfo && bf16=1 && echo "native bfloat16: yes"
for r in $(seq "$rounds"); do
  echo "round $r"
  python tools/bench_train.py "${tf_args[@]}" 2>/dev/null | sed 's/^/  tfclf oneDNN: /' | grep images
  TF_ENABLE_ONEDNN_OPTS=0 python tools/bench_train.py "${tf_args[@]}" 2>/dev/null \
    | sed 's/^/  tfclf Eigen:  /' | grep images
  "$torch_py" "$ref" --steps 40 2>/dev/null | sed 's/^/  /'
  if [ "$bf16" = 1 ]; then
    python tools/bench_train.py "${tf_args[@]}" --precision=mixed_bfloat16 2>/dev/null \
      | sed 's/^/  tfclf bf16:   /' | grep images
    "$torch_py" "$ref" --steps 40 --bf16 2>/dev/null | sed 's/^/  /'
  fi
done

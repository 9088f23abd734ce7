#!/usr/bin/env bash
# The GPU measurements in one run (about 5 minutes on one H100/H200):
#   1. KD step throughput, resnet32x4 -> resnet8x4 on CIFAR-shaped data, batch 64 and 512:
#      the RepDistiller-style reference loop (8 DataLoader workers, fp32) against kdbench's
#      loop (device-side augmentation, bf16) and with the exact teacher-logit cache;
#   2. the projected time of a 240-epoch CIFAR-100 KD cell from those numbers;
#   3. the CUDA-only tests (synchronised latency);
#   4. benchmarks/fashion_mnist.toml on CUDA, if the Fashion-MNIST files are at hand
#      (Debian's /usr/share/datasets/fashion-mnist, or data/fashion-mnist in this tree).
# Results are written under results/perf/ and results/fashion_mnist_cuda/.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python benchmarks/perf/kd_step.py --device cuda --batch 64 512 --steps 300 --workers 8 \
  --out results/perf | tee results/perf/kd_step_cuda.txt

python - <<'PY' | tee -a results/perf/kd_step_cuda.txt
import json
rows = json.load(open("results/perf/kd_step_cuda.json"))["rows"]
print("projected 240-epoch CIFAR-100 KD cell (50,000 images per epoch), minutes:")
for r in rows:
    cells = {k: 240 * 50_000 / r[f"{k}_img_s"] / 60 for k in ("reference", "kdbench", "kdbench+cache")}
    print(f"  batch {r['batch']:>4}: " + ", ".join(f"{k} {v:.1f}" for k, v in cells.items()))
PY

python -m pytest tests/test_measure.py -q

root=""
for candidate in /usr/share/datasets/fashion-mnist data/fashion-mnist; do
  [ -f "$candidate/train-images-idx3-ubyte.gz" ] && root="$(cd "$candidate" && pwd)" && break
done
if [ -n "$root" ]; then
  sed "s|^\[datasets.fashion_mnist\]|[datasets.fashion_mnist]\nroot = \"$root\"|" \
    benchmarks/fashion_mnist.toml > /tmp/fashion_mnist_cuda.toml
  python -m kdbench run /tmp/fashion_mnist_cuda.toml --device cuda --out results/fashion_mnist_cuda -q \
    | tee results/perf/fashion_mnist_cuda.txt
else
  echo "Fashion-MNIST files not found; skipped the CUDA run of benchmarks/fashion_mnist.toml"
fi

#!/usr/bin/env bash
# The GPU measurements in one run, at most 10 minutes on one H100/H200 (each stage has a
# time limit within a 570 s budget, so one that overruns or fails costs only itself):
#   1. KD step throughput, resnet32x4 -> resnet8x4 on CIFAR-shaped data, batch 64 and 512:
#      the RepDistiller-style reference loop (8 DataLoader workers, fp32) against a
#      minimal loop and kdbench's loop (device-side augmentation, bf16, channels-last,
#      folded teacher), with the exact teacher-logit cache, and the projected time of a
#      240-epoch CIFAR-100 KD cell from those rates;
#   2. the CUDA-only tests (autocast, grad scaler, lockstep on CUDA, fp16 logit cache,
#      CUDA graphs, synchronised latency);
#   3. benchmarks/fashion_mnist.toml on CUDA, if the Fashion-MNIST files are at hand
#      (Debian's /usr/share/datasets/fashion-mnist, or data/fashion-mnist in this tree);
#   4. kdbench with compile = "reduce-overhead" (CUDA graphs) at batch 64;
#   5. the cost of evaluating the test split after each epoch against a training epoch;
#   6. ImageNet-sized KD throughput, ResNet34 -> ResNet18 at 224 px on one GPU: kdbench's
#      streaming path (GPU JPEG decoding, bf16) against an mdistiller-style DataLoader loop.
# Results go to results/perf/ (and results/fashion_mnist_cuda/).
#
# On a machine without network access, put wheels of missing dependencies (e.g.
# pydantic, pydantic-core, annotated-types, typing-inspection) in a folder and set
# KDBENCH_WHEELS to it; kdbench itself runs from this tree.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=results/perf
mkdir -p "$out"

if [ -n "${KDBENCH_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/kdbench-site \
    "$KDBENCH_WHEELS"/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/kdbench-site"
fi
python3 -c "import kdbench.cli" || { echo "kdbench cannot be imported: see KDBENCH_WHEELS above"; exit 1; }

# The whole script stays within 10 minutes of device time: each stage gets its own limit
# or what is left of the budget, whichever is less; a stage with under 20 s left is
# skipped (and says so), so the stages before it keep their results.
budget=${KDBENCH_GPU_BUDGET_S:-570}
deadline=$((SECONDS + budget))

stage() {  # stage SECONDS COMMAND...: run with a time limit, report, never abort the script
  local limit=$1 started=$SECONDS left=$((deadline - SECONDS))
  shift
  if [ "$left" -lt 20 ]; then
    echo "== skipped (${left} s of the ${budget} s budget left): $*"
    return 0
  fi
  [ "$left" -lt "$limit" ] && limit=$left
  echo "== $* (limit ${limit} s)"
  timeout "$limit" "$@"
  echo "== exit $? after $((SECONDS - started)) s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu_machine.txt"

stage 180 python3 benchmarks/perf/kd_step.py --device cuda --batch 64 512 --images 8192 \
  --workers 8 --out "$out" 2>&1 | tee "$out/kd_step_cuda.txt"

stage 180 python3 -m pytest tests/test_cuda.py tests/test_measure.py -q -p no:cacheprovider 2>&1 \
  | tee "$out/cuda_tests.txt"

root=""
for candidate in /usr/share/datasets/fashion-mnist data/fashion-mnist; do
  [ -f "$candidate/train-images-idx3-ubyte.gz" ] && root="$(cd "$candidate" && pwd)" && break
done
if [ -n "$root" ]; then
  sed "s|^\[datasets.fashion_mnist\]|[datasets.fashion_mnist]\nroot = \"$root\"|" \
    benchmarks/fashion_mnist.toml > /tmp/fashion_mnist_cuda.toml
  stage 150 python3 -m kdbench run /tmp/fashion_mnist_cuda.toml --device cuda \
    --out results/fashion_mnist_cuda -q 2>&1 | tee "$out/fashion_mnist_cuda.txt"
else
  echo "Fashion-MNIST files not found; skipped the CUDA run of benchmarks/fashion_mnist.toml"
fi

stage 150 python3 benchmarks/perf/kd_step.py --device cuda --batch 64 --images 8192 \
  --workers 8 --compile --tag _graphs --out "$out" 2>&1 | tee "$out/kd_step_cuda_graphs.txt"

stage 90 python3 benchmarks/perf/eval_cost.py --device cuda --steps 200 --eval-images 10000 \
  --eval-batch 512 1024 --repeats 3 --out "$out" 2>&1 | tee "$out/eval_cost_cuda.txt"

stage 300 python3 benchmarks/perf/imagenet_throughput.py --device cuda --world 1 --batch 256 \
  --steps 8 --workers 8 --repeats 3 --out "$out" 2>&1 | tee "$out/imagenet_throughput_cuda.txt"

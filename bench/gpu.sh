#!/usr/bin/env bash
# GPU benchmark: the fp16 ViT-B/14 on onnxruntime's CUDA execution provider, raw model throughput by batch
# size and the end-to-end service (API -> Redis -> worker) with EXECUTION_PROVIDER=cuda.
#
# Needs: an NVIDIA GPU and driver; the CUDA 12 and cuDNN 9 libraries onnxruntime-node 1.30's CUDA build
# links against (on the library path); redis-server; and the CUDA EP binaries, which npm does not ship:
#
#   ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci
#
# Usage: bench/gpu.sh [--quick] [extra `embedpool bench` flags]
#   BATCH_SIZES=1,8,32,64,128   raw batch sizes
#   MAX_BATCH_SIZE=64           the service's micro-batch cap
#   CONCURRENCY=1,16,64,256     client concurrencies for sync /score
#   CUDA_DEVICE_ID=0            which GPU
#
# Writes bench/results/<date>-<host>.{json,md} like `npm run bench`. The bench refuses to report CPU
# numbers as GPU ones: if the CUDA provider cannot start it stops with onnxruntime's reason.
# Written without a GPU at hand: it has not been run yet.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "bench/gpu.sh: $*" >&2
  exit 1
}

command -v nvidia-smi >/dev/null 2>&1 || fail "nvidia-smi not found: no NVIDIA driver on this machine"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader >&2 ||
  fail "nvidia-smi cannot talk to the driver"
command -v redis-server >/dev/null 2>&1 || fail "redis-server not found (Debian/Ubuntu: apt-get install redis-server)"

ort_bin=$(ls -d node_modules/onnxruntime-node/bin/napi-v*/linux/x64 2>/dev/null | head -n 1 || true)
[ -n "$ort_bin" ] || fail "onnxruntime-node is not installed (npm ci)"
[ -f "$ort_bin/libonnxruntime_providers_cuda.so" ] ||
  fail "no CUDA execution provider in $ort_bin: reinstall with ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci"

export ORT_DISABLE_TELEMETRY=1
export EXECUTION_PROVIDER=cuda
export CUDA_DEVICE_ID="${CUDA_DEVICE_ID:-0}"
# The GPU takes batches far bigger than the CPU default of 16; decoding becomes the limit, so give it the
# cores: every decode runs on the libuv pool, whose size is fixed when the process starts.
cores=$(nproc)
export MAX_BATCH_SIZE="${MAX_BATCH_SIZE:-64}"
export DECODE_CONCURRENCY="${DECODE_CONCURRENCY:-$cores}"
export UV_THREADPOOL_SIZE="${UV_THREADPOOL_SIZE:-$((cores + 4))}"
export WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-256}"

batch_sizes="${BATCH_SIZES:-1,8,32,64,128}"
concurrency="${CONCURRENCY:-1,16,64,256}"

# The fp16 random-weight model is built by the bench (model builder, --dtype float16) into
# ~/.cache/embedpool/random/ (or EMBEDPOOL_CACHE_DIR) and reused on the next run.
# Raw layouts: the bench's default, one session and two sessions (two overlap host<->device copies).
exec node bin/embedpool.js bench \
  --provider cuda \
  --dtype float16 \
  --batch-sizes "$batch_sizes" \
  --concurrency "$concurrency" \
  --max-batch "$MAX_BATCH_SIZE" \
  --ab "MAX_BATCH_SIZE=128" \
  --ab "INFERENCE_THREADS=2" \
  "$@"

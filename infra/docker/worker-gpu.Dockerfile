# syntax=docker/dockerfile:1.7
# embedpool queue worker on NVIDIA GPUs (EXECUTION_PROVIDER=cuda): the worker process's own entry point
# (apps/worker/src/main.ts, compiled to dist/worker.mjs). Build from the root:
#   docker build -f infra/docker/worker-gpu.Dockerfile -t embedpool/worker-gpu .
# Runs on a host with the NVIDIA driver and container toolkit (`docker run --gpus all`, compose profile `gpu`,
# the AKS GPU node pool). onnxruntime-node's CUDA 12 execution provider needs CUDA 12 and cuDNN 9 at run time:
# the runtime stage is NVIDIA's CUDA 12 + cuDNN runtime image with the Node 24 binary copied in.

ARG NODE_IMAGE=node:24-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM ${NODE_IMAGE} AS node

# ---- build: type-check and compile (scripts/build.mjs -> dist/) -------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip \
    NPM_CONFIG_UPDATE_NOTIFIER=false
COPY package.json package-lock.json .npmrc ./
COPY packages/core/package.json packages/core/
COPY packages/testkit/package.json packages/testkit/
COPY apps/api/package.json apps/api/
COPY apps/worker/package.json apps/worker/
COPY apps/cli/package.json apps/cli/
COPY test/package.json test/
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.base.json ./
COPY scripts ./scripts
COPY packages ./packages
COPY apps ./apps
RUN node_modules/.bin/tsc -b apps/cli \
 && node scripts/build.mjs --no-typecheck \
 && test -f dist/worker.mjs && test -f dist/cli.mjs && test -f dist/inference-thread-entry.mjs

# ---- deps: production node_modules + the CUDA execution provider --------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# `cuda12`: onnxruntime-node's install script downloads the CUDA EP libraries (libonnxruntime_providers_cuda.so
# and friends, from NuGet) at image build time. npm 11 runs only approved install scripts, so `npm ci` runs none
# (--ignore-scripts) and the one script we need is run explicitly, then checked.
ENV ONNXRUNTIME_NODE_INSTALL=cuda12 \
    NPM_CONFIG_UPDATE_NOTIFIER=false
COPY package.json package-lock.json .npmrc ./
COPY packages/core/package.json packages/core/
COPY packages/testkit/package.json packages/testkit/
COPY apps/api/package.json apps/api/
COPY apps/worker/package.json apps/worker/
COPY apps/cli/package.json apps/cli/
COPY test/package.json test/
COPY scripts/deps-closure.mjs scripts/
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && node scripts/deps-closure.mjs . --prune \
 && test ! -e node_modules/typescript \
 && test ! -e node_modules/tsx \
 && node node_modules/onnxruntime-node/script/install.js \
 && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 -type d ! -path "*/linux/x64" -exec rm -rf {} + \
 && ls -l node_modules/onnxruntime-node/bin/napi-v6/linux/x64 \
 && test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so \
 && test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_shared.so

# ---- runtime: CUDA 12 + cuDNN 9 runtime, Node 24 --------------------------------------------------------
FROM ${CUDA_IMAGE} AS runtime
LABEL org.opencontainers.image.title="embedpool-worker-gpu" \
      org.opencontainers.image.description="embedpool queue worker: DINOv2 embeddings with onnxruntime-node on CUDA" \
      org.opencontainers.image.licenses="Apache-2.0"
# Node from the official image (a self-contained binary; glibc 2.36 build, the Ubuntu 24.04 base has 2.39).
COPY --from=node /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
ENV NODE_ENV=production \
    EXECUTION_PROVIDER=cuda \
    CUDA_DEVICE_ID=0 \
    MAX_BATCH_SIZE=32 \
    WORKER_METRICS_HOST=0.0.0.0 \
    WORKER_METRICS_PORT=9464 \
    EMBEDPOOL_CACHE_DIR=/var/cache/embedpool \
    SHUTDOWN_TIMEOUT_MS=30000
# (NVIDIA_VISIBLE_DEVICES / NVIDIA_DRIVER_CAPABILITIES come from the CUDA base image.)
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY --from=build /app/dist ./dist
COPY infra/docker/healthcheck.mjs ./infra/docker/healthcheck.mjs
RUN node --version \
 && mkdir -p /var/cache/embedpool && chown 1000:1000 /var/cache/embedpool
VOLUME ["/var/cache/embedpool"]
# uid 1000 (`ubuntu` in the Ubuntu 24.04 base); numeric so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 9464
# SIGTERM drains in-flight jobs within SHUTDOWN_TIMEOUT_MS (30 s); orchestrator grace periods are longer.
STOPSIGNAL SIGTERM
# A GPU worker's first model load (CUDA context, cuDNN autotuning) can take minutes.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["node", "infra/docker/healthcheck.mjs", "worker", "/healthz"]
# V8 flags: SERVICE_NODE_FLAGS (packages/core/src/process/node-flags.ts says why).
ENTRYPOINT ["node", "--initial-old-space-size=256", "dist/worker.mjs"]

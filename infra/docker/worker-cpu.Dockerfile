# syntax=docker/dockerfile:1.7
# embedpool queue worker on CPU (EXECUTION_PROVIDER=cpu): the worker process's own entry point
# (apps/worker/src/main.ts, compiled to dist/worker.mjs). Build from the repository root:
#   docker build -f infra/docker/worker-cpu.Dockerfile -t embedpool/worker-cpu .
# The same image runs `model fetch` from the CLI, dist/cli.mjs (compose's model-init with
# `entrypoint: ["node", "dist/cli.mjs"]`, the Kubernetes model-fetch Job).

ARG NODE_IMAGE=node:24-bookworm-slim

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

# ---- deps: production node_modules only ---------------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# CPU image: never download the CUDA execution provider, and run no install scripts (see api.Dockerfile).
ENV ONNXRUNTIME_NODE_INSTALL=skip \
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
 && ARCH="$(node -p process.arch)" \
 && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 -type d ! -path "*/linux/${ARCH}" -exec rm -rf {} + \
 && test -f "node_modules/onnxruntime-node/bin/napi-v6/linux/${ARCH}/onnxruntime_binding.node"

# ---- runtime ------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="embedpool-worker-cpu" \
      org.opencontainers.image.description="embedpool queue worker: DINOv2 embeddings with onnxruntime-node on CPU" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
ENV NODE_ENV=production \
    EXECUTION_PROVIDER=cpu \
    WORKER_METRICS_HOST=0.0.0.0 \
    WORKER_METRICS_PORT=9464 \
    EMBEDPOOL_CACHE_DIR=/var/cache/embedpool \
    SHUTDOWN_TIMEOUT_MS=30000
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY --from=build /app/dist ./dist
COPY infra/docker/healthcheck.mjs ./infra/docker/healthcheck.mjs
# The model cache: a volume shared by the workers (compose `models`, a PVC on Kubernetes). Owned by the
# service user so an empty named volume mounted here starts writable for `model fetch`.
RUN mkdir -p /var/cache/embedpool && chown 1000:1000 /var/cache/embedpool
VOLUME ["/var/cache/embedpool"]
USER 1000:1000
EXPOSE 9464
# SIGTERM: stop taking jobs, finish the in-flight ones, exit within SHUTDOWN_TIMEOUT_MS (30 s here); the
# orchestrator's grace period must be longer (compose stop_grace_period 45s, k8s terminationGracePeriodSeconds 45).
STOPSIGNAL SIGTERM
# /healthz answers once the model is loaded and the metrics listener is up: allow for a slow first load.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
  CMD ["node", "infra/docker/healthcheck.mjs", "worker", "/healthz"]
# V8 flags: SERVICE_NODE_FLAGS (packages/core/src/process/node-flags.ts says why).
ENTRYPOINT ["node", "--initial-old-space-size=256", "dist/worker.mjs"]

# syntax=docker/dockerfile:1.7
# embedpool HTTP API: the API process's own entry point (apps/api/src/main.ts). Build from the repository root:
#   docker build -f infra/docker/api.Dockerfile -t embedpool/api .
# Runs compiled JavaScript (dist/api.mjs, built by scripts/build.mjs): no TypeScript compiler or loader at
# run time, and node_modules pruned to the API's own dependencies (scripts/deps-closure.mjs): no
# onnxruntime, no sharp (test/infra/api-image.test.ts runs the API from exactly that set).

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: type-check and compile ----------------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Never download CUDA binaries, and run no install scripts: every native dependency ships prebuilt.
ENV ONNXRUNTIME_NODE_INSTALL=skip \
    NPM_CONFIG_UPDATE_NOTIFIER=false
# npm workspaces: `npm ci` needs the root manifest, the lockfile and every workspace's package.json.
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
 && test -f dist/api.mjs

# ---- deps: the API's production dependencies only -------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
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
COPY scripts/deps-closure.mjs scripts/
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && node scripts/deps-closure.mjs apps/api --prune \
 && test ! -e node_modules/onnxruntime-node \
 && test ! -e node_modules/sharp \
 && test ! -e node_modules/typescript \
 && test ! -e node_modules/tsx

# ---- runtime ------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="embedpool-api" \
      org.opencontainers.image.description="embedpool HTTP API: validates /score requests and queues them in Redis" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    SHUTDOWN_TIMEOUT_MS=30000
# Code and dependencies stay owned by root and read-only to the service user.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY --from=build /app/dist ./dist
COPY infra/docker/healthcheck.mjs ./infra/docker/healthcheck.mjs
# Numeric non-root user (uid 1000 is `node` in the Node images) so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8080
# The process drains on SIGTERM for up to SHUTDOWN_TIMEOUT_MS; give `docker stop` / compose
# (stop_grace_period) / Kubernetes (terminationGracePeriodSeconds) more than that.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "infra/docker/healthcheck.mjs", "api", "/healthz"]
# V8 flags: SERVICE_NODE_FLAGS (packages/core/src/process/node-flags.ts says why).
ENTRYPOINT ["node", "--initial-old-space-size=256", "dist/api.mjs"]

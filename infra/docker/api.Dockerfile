# syntax=docker/dockerfile:1.7
# embedpool HTTP API (`embedpool api`). Build from the repository root:
#   docker build -f infra/docker/api.Dockerfile -t embedpool/api .
# No build step: tsx (a runtime dependency of @embedpool/core) compiles the TypeScript on load.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- deps: production node_modules only ---------------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# Never download CUDA binaries here; and run no install scripts at all: every native dependency the API
# and CPU worker need (sharp, onnxruntime-node CPU, esbuild, msgpackr) ships prebuilt in the tarballs or as
# optional platform packages, so `--ignore-scripts` gives the same tree whatever npm's script policy is.
ENV ONNXRUNTIME_NODE_INSTALL=skip \
    NPM_CONFIG_UPDATE_NOTIFIER=false
# npm workspaces: `npm ci` needs the root manifest, the lockfile and every workspace's package.json.
COPY package.json package-lock.json .npmrc ./
COPY packages/core/package.json packages/core/
COPY apps/api/package.json apps/api/
COPY apps/worker/package.json apps/worker/
COPY test/package.json test/
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && test -d node_modules/tsx \
 && ARCH="$(node -p process.arch)" \
 && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 -type d ! -path "*/linux/${ARCH}" -exec rm -rf {} +

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
COPY package.json package-lock.json .npmrc tsconfig.json tsconfig.base.json ./
COPY bin ./bin
COPY packages ./packages
COPY apps ./apps
COPY test/package.json ./test/
COPY infra/docker/healthcheck.mjs ./infra/docker/healthcheck.mjs
# Numeric non-root user (uid 1000 is `node` in the Node images) so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8080
# The process drains on SIGTERM for up to SHUTDOWN_TIMEOUT_MS; give `docker stop` / compose
# (stop_grace_period) / Kubernetes (terminationGracePeriodSeconds) more than that.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "infra/docker/healthcheck.mjs", "api", "/healthz"]
ENTRYPOINT ["node", "bin/embedpool.js"]
CMD ["api"]

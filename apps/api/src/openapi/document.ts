/**
 * The OpenAPI 3.1 description of the HTTP API, served at GET /openapi.json. Every route the express app
 * serves must be here: test/e2e/openapi.test.ts walks the app's router and fails on any (method, path) the
 * document and the app disagree on, and checks live answers against the response schemas.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RETRY_AFTER_S } from '../http-errors';
import { ingestionsOpenApi } from './ingestions';
import { componentSchemas, type JsonSchema, ref } from './schemas';

export type OpenApiDocument = Record<string, unknown> & {
  openapi: string;
  info: { title: string; version: string; [k: string]: unknown };
  paths: Record<string, Record<string, unknown>>;
};

/** The repository's package.json, found upwards from this file: the source tree and the compiled bundle differ. */
function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (pkg.name === 'embedpool' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // no package.json here: keep looking upwards
    }
    const parent = dirname(dir);
    if (parent === dir) return '0.0.0';
    dir = parent;
  }
}

const json = (schema: JsonSchema) => ({ 'application/json': { schema } });
const hdr = (name: string) => ({ $ref: `#/components/headers/${name}` });
const param = (name: string) => ({ $ref: `#/components/parameters/${name}` });
const resp = (name: string) => ({ $ref: `#/components/responses/${name}` });

/** A response; every answer carries X-Request-Id. */
function response(
  description: string,
  content?: Record<string, unknown>,
  headers: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    description,
    headers: { 'X-Request-Id': hdr('XRequestId'), ...headers },
    ...(content ? { content } : {}),
  };
}

const serviceError = (description: string, headers: Record<string, unknown> = {}) =>
  response(description, json(ref('Error')), headers);

/** OpenAI-shaped errors carry x-should-retry: false when a retry can never succeed. */
const openAiError = (description: string, headers: Record<string, unknown> = {}) =>
  response(description, json(ref('OpenAIError')), { 'x-should-retry': hdr('XShouldRetry'), ...headers });

/**
 * The document's shared parameters, headers, responses and security schemes.
 * Long: one literal table read top to bottom; splitting it would only scatter the names it defines.
 */
function components(): Record<string, unknown> {
  return {
    schemas: componentSchemas(),
    parameters: {
      JobId: {
        name: 'id',
        in: 'path',
        required: true,
        description: 'The job id POST /v1/jobs answered.',
        schema: { type: 'string' },
      },
      IdempotencyKey: {
        name: 'Idempotency-Key',
        in: 'header',
        required: false,
        description:
          'Makes a retried submission safe: the same key with the same body (compared as JSON, key order ' +
          'and whitespace aside) answers 200 with the job the first request created; the same key with a ' +
          'different body is a 400. Keys are kept as long as the job record (JOB_TTL_S).',
        schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' },
      },
      XRequestId: {
        name: 'X-Request-Id',
        in: 'header',
        required: false,
        description: "The request's id in the logs (echoed); a fresh uuid when absent or not sane.",
        schema: { type: 'string', pattern: '^[A-Za-z0-9._:@/+=-]{1,128}$' },
      },
      AcceptResult: {
        name: 'Accept',
        in: 'header',
        required: false,
        description:
          'application/octet-stream: the vectors as raw float32 (see the response); anything else: JSON. ' +
          '(OpenAPI tools ignore an Accept parameter; the two response media types say the same.)',
        schema: { type: 'string', enum: ['application/json', 'application/octet-stream'] },
      },
    },
    headers: {
      XRequestId: {
        description: "The request's id in the API's logs.",
        required: true,
        schema: { type: 'string' },
      },
      RetryAfter: {
        description: `Seconds to wait before retrying (${RETRY_AFTER_S}).`,
        required: true,
        schema: { type: 'integer', minimum: 0 },
      },
      Location: {
        description: "The job's status URL, relative to the API: /v1/jobs/{id}.",
        required: true,
        schema: { type: 'string' },
      },
      WWWAuthenticate: {
        description: 'The authentication scheme to use (Bearer realm="embedpool").',
        required: true,
        schema: { type: 'string' },
      },
      XShouldRetry: {
        description: '"false" on errors that no retry can fix (OpenAI SDKs obey it); absent otherwise.',
        schema: { type: 'string', enum: ['false'] },
      },
      // Sent with the application/octet-stream answer only (OpenAPI cannot tie a header to a media type).
      XEmbeddingDim: {
        description: 'Floats per vector (application/octet-stream answers only).',
        schema: { type: 'integer', minimum: 0 },
      },
      XEmbeddingCount: {
        description: 'Vectors (rows) in the body (application/octet-stream answers only).',
        schema: { type: 'integer', minimum: 0 },
      },
      XEmbeddingIds: {
        description:
          'encodeURIComponent(JSON array of the image ids, in row order) (application/octet-stream answers only).',
        schema: { type: 'string' },
      },
    },
    responses: {
      BadRequest: serviceError(
        'The request is malformed (body, JSON, fields), or some images are bad: then `row` names the ' +
          'first and `failures` lists every one, and nothing was queued.',
      ),
      TooLarge: serviceError(
        'More images than the limit allows (TOO_MANY_IMAGES) or a body over MAX_BODY_BYTES ' +
          '(PAYLOAD_TOO_LARGE).',
      ),
      NotFound: serviceError('No such job, or (for its result) nothing to serve: see the message.'),
      Unavailable: serviceError('Redis is unreachable (UNAVAILABLE); retry after Retry-After.', {
        'Retry-After': hdr('RetryAfter'),
      }),
      Timeout: serviceError('No answer within REQUEST_TIMEOUT_MS (TIMEOUT); the job was cancelled.'),
      Conflict: serviceError(
        'A concurrent request with the same Idempotency-Key is still creating its job (CONFLICT); send it ' +
          'again after Retry-After and it answers with that job.',
        { 'Retry-After': hdr('RetryAfter') },
      ),
      Gone: serviceError(
        'The id was minted before Redis lost its data (STATE_LOST): its record is gone, not unknown. ' +
          '`embedpool recover` lists the outputs such jobs left in storage.',
      ),
      Internal: serviceError('An internal error, or the worker failed the whole request.'),
      OpenAIBadRequest: openAiError(
        'A bad field (`param` names it), malformed JSON, or bad images (`failures` lists each input).',
      ),
      OpenAITooLarge: openAiError('Too many inputs (TOO_MANY_IMAGES) or a body over MAX_BODY_BYTES.'),
      OpenAIUnavailable: openAiError('Redis is unreachable; retry after Retry-After.', {
        'Retry-After': hdr('RetryAfter'),
      }),
      OpenAITimeout: openAiError('No answer within REQUEST_TIMEOUT_MS (TIMEOUT); the job was cancelled.'),
      OpenAIInternal: openAiError('An internal error, or the worker failed the whole request.'),
      Unauthorized: serviceError('Missing, malformed or wrong credentials (UNAUTHORIZED).', {
        'WWW-Authenticate': hdr('WWWAuthenticate'),
      }),
      Forbidden: serviceError('A valid Entra ID token without the role AUTH_JWT_ROLE requires (FORBIDDEN).'),
      TooManyRequests: serviceError(
        "The caller's rate limit (RATE_LIMITED) or the backlog (OVERLOADED) is full; retry after Retry-After.",
        { 'Retry-After': hdr('RetryAfter') },
      ),
      OpenAIUnauthorized: openAiError('Missing, malformed or wrong credentials (UNAUTHORIZED).', {
        'WWW-Authenticate': hdr('WWWAuthenticate'),
      }),
      OpenAIForbidden: openAiError('A valid Entra ID token without the role AUTH_JWT_ROLE requires.'),
      OpenAITooManyRequests: openAiError(
        "The caller's rate limit (RATE_LIMITED) or the backlog (OVERLOADED) is full; retry after Retry-After.",
        { 'Retry-After': hdr('RetryAfter') },
      ),
    },
    securitySchemes: {
      bearer: {
        type: 'http',
        scheme: 'bearer',
        description:
          'Authorization: Bearer <API key> (API_KEYS) or an Entra ID access token (AUTH_JWT_*). ' +
          'Not required when the API listens on loopback only or AUTH=none (docs/hardening.md).',
      },
      apiKey: {
        type: 'apiKey',
        in: 'header',
        name: 'api-key',
        description: 'api-key: <API key>, as Azure OpenAI clients send it.',
      },
    },
  };
}

/** Operations open to anyone: probes, this document and its rendering. */
const OPEN: readonly string[] = ['/', '/docs', '/healthz', '/readyz', '/openapi.json'];
/** Routes answering in OpenAI's error shape. */
const OPENAI_SHAPED: readonly string[] = ['/v1/embeddings', '/v1/models'];

/**
 * Every operation behind authenticate() (apps/api/src/app.ts) can also be refused before its route runs:
 * 401 (credentials), 403 (role), 429 (rate limit, backlog) and 503 (Redis, or Entra's keys unreachable);
 * one with a body also 413 (MAX_BODY_BYTES). Added here once rather than written into every operation.
 */
function withGuardResponses(all: Record<string, Record<string, unknown>>): void {
  for (const [path, item] of Object.entries(all)) {
    for (const [method, op] of Object.entries(item)) {
      if (method === 'parameters' || typeof op !== 'object' || op === null) continue;
      const o = op as { responses: Record<string, unknown>; requestBody?: unknown; security?: unknown };
      if (OPEN.includes(path)) {
        o.security = [];
        continue;
      }
      const openAi = OPENAI_SHAPED.includes(path);
      const guard: Record<string, unknown> = {
        '401': resp(openAi ? 'OpenAIUnauthorized' : 'Unauthorized'),
        '403': resp(openAi ? 'OpenAIForbidden' : 'Forbidden'),
        ...(path === '/metrics' ? {} : { '429': resp(openAi ? 'OpenAITooManyRequests' : 'TooManyRequests') }),
        '503': resp(openAi ? 'OpenAIUnavailable' : 'Unavailable'),
        ...(o.requestBody ? { '413': resp(openAi ? 'OpenAITooLarge' : 'TooLarge') } : {}),
      };
      o.responses = {
        ...o.responses,
        ...Object.fromEntries(Object.entries(guard).filter(([k]) => !(k in o.responses))),
      };
    }
  }
}

const requestId = param('XRequestId');

/** The answers every /v1/jobs/{id} operation shares. */
const jobResponses = {
  '404': resp('NotFound'),
  '410': resp('Gone'),
  '500': resp('Internal'),
  '503': resp('Unavailable'),
};

/** Synchronous embeddings: /score (Azure ML) and /v1/embeddings (OpenAI). */
function scoringPaths(): Record<string, Record<string, unknown>> {
  return {
    '/score': {
      post: {
        operationId: 'score',
        tags: ['score'],
        summary: 'Embed images synchronously (Azure ML online-endpoint contract)',
        description:
          'One request is one job, answered when every image is embedded: a 400 when any image fails ' +
          '(naming the rows, as Azure does). The job is cancelled if the client disconnects first.',
        parameters: [requestId],
        requestBody: { required: true, content: json(ref('AzureScoreRequest')) },
        responses: {
          '200': response('One vector per row, in row order.', json(ref('ScoreResponse'))),
          '400': resp('BadRequest'),
          '413': resp('TooLarge'),
          '500': resp('Internal'),
          '503': resp('Unavailable'),
          '504': resp('Timeout'),
        },
      },
    },
    '/v1/embeddings': {
      post: {
        operationId: 'createEmbeddings',
        tags: ['embeddings'],
        summary: 'Embed images synchronously (OpenAI embeddings contract)',
        description:
          'Point an OpenAI SDK at a base URL of http://host:port/v1. Same limits, deadline and ' +
          "cancellation as /score; errors in OpenAI's shape. See docs/openai.md.",
        parameters: [requestId],
        requestBody: { required: true, content: json(ref('EmbeddingsRequest')) },
        responses: {
          '200': response('The vectors, in input order.', json(ref('EmbeddingsResponse'))),
          '400': resp('OpenAIBadRequest'),
          '413': resp('OpenAITooLarge'),
          '500': resp('OpenAIInternal'),
          '503': resp('OpenAIUnavailable'),
          '504': resp('OpenAITimeout'),
        },
      },
    },
  };
}

/** Asynchronous jobs: submit, status, cancel. */
function jobPaths(): Record<string, Record<string, unknown>> {
  return {
    '/v1/jobs': {
      post: {
        operationId: 'createJob',
        tags: ['jobs'],
        summary: 'Submit an asynchronous embedding job',
        description:
          'Validates every image up front (a 400 lists each bad one and queues nothing), then queues the ' +
          'job and answers at once. Blob output needs a storage account and callbacks need ' +
          'CALLBACK_SECRET on the deployment (else 400). Poll GET /v1/jobs/{id}, or have the result ' +
          'delivered (blob, callback).',
        parameters: [param('IdempotencyKey'), requestId],
        requestBody: { required: true, content: json(ref('CreateJobRequest')) },
        responses: {
          '202': response('Queued.', json(ref('JobAccepted')), { Location: hdr('Location') }),
          '200': response(
            'An earlier submission with the same Idempotency-Key and body.',
            json(ref('JobExisting')),
            {
              Location: hdr('Location'),
            },
          ),
          '400': resp('BadRequest'),
          '409': resp('Conflict'),
          '413': resp('TooLarge'),
          '500': resp('Internal'),
          '503': resp('Unavailable'),
        },
      },
    },
    '/v1/jobs/{id}': {
      parameters: [param('JobId')],
      get: {
        operationId: 'getJob',
        tags: ['jobs'],
        summary: "A job's state, counts, times, output, delivery and per-image status",
        parameters: [requestId],
        responses: { '200': response('The job.', json(ref('Job'))), ...jobResponses },
      },
      delete: {
        operationId: 'cancelJob',
        tags: ['jobs'],
        summary: 'Cancel a queued job',
        description: 'Only a job still `queued` can be cancelled; any other state is a 400.',
        parameters: [requestId],
        responses: {
          '200': response('Cancelled; the job as it is now.', json(ref('Job'))),
          '400': serviceError('The job is not queued (running or finished).'),
          ...jobResponses,
        },
      },
    },
  };
}

/** Asynchronous jobs: the result, and the redrive of a dead-lettered callback. */
function jobResultPaths(): Record<string, Record<string, unknown>> {
  return {
    '/v1/jobs/{id}/result': {
      parameters: [param('JobId')],
      get: {
        operationId: 'getJobResult',
        tags: ['jobs'],
        summary: "An inline job's vectors",
        description:
          'Served for `inline` jobs that ended `completed` or `partially_failed`, for JOB_RESULT_TTL_S ' +
          'after they finished; otherwise a 404 saying why (other output, not finished, expired).',
        parameters: [param('AcceptResult'), requestId],
        responses: {
          '200': response(
            'The result. JSON by default; with Accept: application/octet-stream, the raw vectors.',
            {
              'application/json': { schema: ref('JobResult') },
              'application/octet-stream': {
                schema: {
                  description:
                    'X-Embedding-Count rows of X-Embedding-Dim float32 values, row-major, little-endian, ' +
                    'one row per image in submission order (a failed image is a row of zeros).',
                },
              },
            },
            {
              'X-Embedding-Dim': hdr('XEmbeddingDim'),
              'X-Embedding-Count': hdr('XEmbeddingCount'),
              'X-Embedding-Ids': hdr('XEmbeddingIds'),
            },
          ),
          ...jobResponses,
        },
      },
    },
    '/v1/jobs/{id}/callback/redrive': {
      parameters: [param('JobId')],
      post: {
        operationId: 'redriveJobCallback',
        tags: ['jobs'],
        summary: 'Re-send a dead-lettered callback delivery',
        description:
          'Gives a dead-lettered delivery CALLBACK_ATTEMPTS more attempts (same Embedpool-Delivery-Id).',
        parameters: [requestId],
        responses: {
          '202': response('Re-queued; the job as it is now.', json(ref('Job'))),
          '400': serviceError(
            'Callbacks are not configured, the job has no callback delivery, or it is not dead-lettered.',
          ),
          ...jobResponses,
        },
      },
    },
  };
}

/** The models served, the landing page, the API reference and the probes. */
function servicePaths(): Record<string, Record<string, unknown>> {
  return {
    '/v1/models': {
      get: {
        operationId: 'listModels',
        tags: ['embeddings'],
        summary: 'The models live workers serve (OpenAI list-models contract)',
        description:
          "OpenAI's list shape, one entry per model id that a worker with a heartbeat within " +
          'READY_WORKER_TTL_S serves, with its dimension, precision and whether its weights are random. ' +
          'Empty while no worker has a model loaded.',
        parameters: [requestId],
        responses: {
          '200': response('The served models.', json(ref('ModelList'))),
          '500': resp('OpenAIInternal'),
        },
      },
    },
    '/': {
      get: {
        operationId: 'root',
        tags: ['operations'],
        summary: 'Liveness, as the Azure ML inference server answers it',
        description: 'Answers `Healthy` while the process runs (same meaning as /healthz).',
        responses: {
          '200': response('Alive.', { 'text/plain': { schema: { const: 'Healthy' } } }),
        },
      },
    },
    '/docs': {
      get: {
        operationId: 'docs',
        tags: ['operations'],
        summary: 'This document, rendered (Swagger UI, served by this server: works offline)',
        responses: {
          '200': response('An HTML page that renders /openapi.json.', {
            'text/html': { schema: { type: 'string' } },
          }),
        },
      },
    },
    '/healthz': {
      get: {
        operationId: 'healthz',
        tags: ['operations'],
        summary: 'Liveness: the process answers',
        responses: { '200': response('Alive.', json(ref('Healthy'))) },
      },
    },
    '/readyz': {
      get: {
        operationId: 'readyz',
        tags: ['operations'],
        summary: 'Readiness: a /score request sent now can be answered',
        description:
          'Ready when Redis answers, job events are being received and at least one worker with a ' +
          'loaded model sent a heartbeat within READY_WORKER_TTL_S.',
        responses: {
          '200': response('Ready.', json(ref('Ready'))),
          '503': response('Not ready; `reason` says why.', json(ref('NotReady')), {
            'Retry-After': hdr('RetryAfter'),
          }),
        },
      },
    },
  };
}

/** Metrics, the inline-image hand-off between API processes, and this document. */
function internalPaths(): Record<string, Record<string, unknown>> {
  return {
    '/metrics': {
      get: {
        operationId: 'metrics',
        tags: ['operations'],
        summary: 'Prometheus metrics',
        responses: {
          '200': response('Prometheus text exposition format.', {
            'text/plain; version=0.0.4': { schema: { type: 'string' } },
          }),
        },
      },
    },
    '/internal/inline/{id}': {
      get: {
        operationId: 'getInlineImages',
        tags: ['operations'],
        summary: 'Workers only: the raw bytes of a waiting request',
        description:
          'The base64 images of a `/score` or `/v1/embeddings` request this API process is holding, decoded and ' +
          'packed back to back, for the worker running its job (see INLINE_HANDOFF_URL). No API credentials: ' +
          "the job's own secret in `X-Embedpool-Handoff` instead; 404 for an unknown id, a wrong secret, or a " +
          'request that is over.',
        parameters: [
          { name: 'id', in: 'path', required: true, schema: { type: 'string' } },
          { name: 'X-Embedpool-Handoff', in: 'header', required: true, schema: { type: 'string' } },
        ],
        responses: {
          '200': response('The images, back to back.', {
            'application/octet-stream': { schema: { description: 'Raw encoded image bytes.' } },
          }),
          '404': serviceError('No such images (or not for this secret).'),
        },
      },
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        tags: ['operations'],
        summary: 'This document',
        responses: {
          '200': response('The OpenAPI 3.1 document.', json({ type: 'object' })),
        },
      },
    },
  };
}

/** Every path but the ingestions (openapi/ingestions.ts), in the order the document lists them. */
function paths(): Record<string, Record<string, unknown>> {
  return { ...scoringPaths(), ...jobPaths(), ...jobResultPaths(), ...servicePaths(), ...internalPaths() };
}

function webhooks(): Record<string, unknown> {
  const header = (name: string, description: string, schema: JsonSchema) => ({
    name,
    in: 'header',
    required: true,
    description,
    schema,
  });
  return {
    'job.completed': {
      post: {
        operationId: 'jobCompleted',
        tags: ['jobs'],
        summary: 'A job finished: its vectors (callback output) or where its blobs are (blob + callbackUrl)',
        description:
          "POSTed to the job's callback URL when it finishes (not when it is cancelled). Verify " +
          'Embedpool-Signature over the raw body before parsing it. Delivery is at least once: skip a ' +
          'repeated Embedpool-Delivery-Id. See docs/webhooks.md.',
        parameters: [
          header('Embedpool-Event', 'The event name.', { const: 'job.completed' }),
          header(
            'Embedpool-Delivery-Id',
            'Derived from the job id: the same on every attempt and redrive of the delivery.',
            { type: 'string', pattern: '^dlv_[0-9a-f]{32}$' },
          ),
          header(
            'Embedpool-Signature',
            '`t=<unix seconds>,v1=<hex>`: hex HMAC-SHA256 with key CALLBACK_SECRET over `<t>.<raw body>`. ' +
              'May carry several v1= values while a secret is rotated; reject a t more than 5 minutes off.',
            { type: 'string', pattern: '^t=\\d+(,v1=[0-9a-f]{64})+$' },
          ),
          header('User-Agent', 'Always "embedpool".', { const: 'embedpool' }),
        ],
        requestBody: {
          required: true,
          content: json({ oneOf: [ref('WebhookVectors'), ref('WebhookBlobPointer')] }),
        },
        responses: {
          '2XX': { description: 'Accepted: the delivery is done (the body is ignored).' },
          default: {
            description:
              'Any other answer, a redirect, a connection error or a time-out is a failed attempt: retried ' +
              'with exponential backoff up to CALLBACK_ATTEMPTS times, then dead-lettered.',
          },
        },
      },
    },
  };
}

/** The whole document; built once per process by the route. */
export function buildOpenApiDocument(): OpenApiDocument {
  const ing = ingestionsOpenApi();
  const base = components() as {
    schemas: Record<string, unknown>;
    parameters: Record<string, unknown>;
    headers: Record<string, unknown>;
  } & Record<string, unknown>;
  const allPaths = { ...paths(), ...ing.paths };
  withGuardResponses(allPaths);
  return {
    openapi: '3.1.0',
    info: {
      title: 'embedpool',
      version: packageVersion(),
      summary: 'DINOv2 image embeddings as a service',
      description:
        'Synchronous embeddings through the Azure ML online-endpoint contract (POST /score) and ' +
        "OpenAI's embeddings contract (POST /v1/embeddings); asynchronous jobs (/v1/jobs) with inline, " +
        'Azure Blob or signed-callback output; bulk ingestion of Blob containers (/v1/ingestions). ' +
        'Authentication: API keys (Authorization: Bearer or api-key) or Entra ID tokens, off only on ' +
        'loopback or with AUTH=none (docs/hardening.md).',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    tags: [
      { name: 'score', description: 'Azure ML compatible synchronous scoring.' },
      { name: 'embeddings', description: 'OpenAI compatible synchronous embeddings.' },
      { name: 'jobs', description: 'Asynchronous embedding jobs (see docs/jobs.md).' },
      { name: 'operations', description: 'Probes, metrics and this document.' },
      ...ing.tags,
    ],
    security: [{ bearer: [] }, { apiKey: [] }],
    paths: allPaths,
    webhooks: webhooks(),
    components: {
      ...base,
      schemas: { ...base.schemas, ...ing.components.schemas },
      parameters: { ...base.parameters, ...ing.components.parameters },
      headers: { ...base.headers, ...ing.components.headers },
    },
  };
}

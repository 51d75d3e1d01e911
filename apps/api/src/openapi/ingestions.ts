/**
 * The OpenAPI 3.1 description of /v1/ingestions (apps/api/src/routes/ingestions.ts): `paths`,
 * `components.{schemas,parameters,headers}` and `tags`, merged into the document by document.ts. References
 * the document's own `XRequestId` parameter and header, `Error` schema and `NotFound`/`Gone`/`Internal`/
 * `Unavailable`/`BadRequest` responses.
 */
import { INGESTION_STATES } from '@embedpool/core/ingest';
import { MAX_PAGE } from '../routes/ingestions';

const schemaRef = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Record<string, unknown>) => ({ 'application/json': { schema } });
const requestId = { $ref: '#/components/parameters/XRequestId' };
const id = { $ref: '#/components/parameters/IngestionId' };
const response = (
  description: string,
  content?: Record<string, unknown>,
  headers: Record<string, unknown> = {},
) => ({
  description,
  headers: { 'X-Request-Id': { $ref: '#/components/headers/XRequestId' }, ...headers },
  ...(content ? { content } : {}),
});

const common = {
  '404': { $ref: '#/components/responses/NotFound' },
  '410': { $ref: '#/components/responses/Gone' },
  '500': { $ref: '#/components/responses/Internal' },
  '503': { $ref: '#/components/responses/Unavailable' },
};

const page = [
  {
    name: 'limit',
    in: 'query',
    required: false,
    schema: { type: 'integer', minimum: 1, maximum: MAX_PAGE },
  },
  {
    name: 'cursor',
    in: 'query',
    required: false,
    description: 'The `next` of the previous page.',
    schema: { type: 'string', pattern: '^[A-Za-z0-9_-]*$' },
  },
];

const count = { type: 'integer', minimum: 0 };

const source = {
  type: 'object',
  required: ['container'],
  properties: {
    connection: { type: 'string', enum: ['default'], description: "The deployment's storage account." },
    container: { type: 'string', pattern: '^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$' },
    prefix: { type: 'string', maxLength: 1024, description: 'Listing prefix.' },
    glob: { type: 'string', maxLength: 1024, description: 'picomatch glob over the whole blob name.' },
    extensions: {
      type: 'array',
      items: { type: 'string', pattern: '^\\.?[A-Za-z0-9]{1,16}$' },
      minItems: 1,
      maxItems: 64,
    },
    manifest: {
      type: 'object',
      required: ['name'],
      description:
        'Instead of listing the container: a .jsonl/.ndjson or .csv blob naming blobs of `container` or ' +
        'http(s) image URLs, one per line (see docs/ingestion.md).',
      properties: {
        container: { type: 'string', pattern: '^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$' },
        name: { type: 'string', minLength: 1, maxLength: 1024 },
      },
    },
  },
};

const output = {
  type: 'object',
  required: ['container'],
  properties: {
    container: { type: 'string', pattern: '^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$' },
    prefix: { type: 'string', maxLength: 512 },
    format: { type: 'string', enum: ['parquet', 'jsonl'] },
    manifest: { type: 'string', description: 'The manifest blob, once the run has written it.' },
  },
};

const schemas = {
  CreateIngestionRequest: {
    type: 'object',
    required: ['source', 'output'],
    description: 'See docs/ingestion.md.',
    properties: {
      source,
      output,
      callbackUrl: { type: 'string', format: 'uri' },
      retryUnchangedFailures: { type: 'boolean' },
    },
  },
  Ingestion: {
    type: 'object',
    required: ['id', 'state', 'round', 'source', 'output', 'counts', 'listing', 'throughput', 'createdAt'],
    properties: {
      id: { type: 'string' },
      state: {
        type: 'string',
        enum: [...INGESTION_STATES],
      },
      run: { type: 'integer', minimum: 1 },
      round: { type: 'integer', minimum: 0 },
      source,
      output,
      counts: {
        type: 'object',
        properties: {
          discovered: count,
          listed: { ...count, description: 'The same as `discovered`.' },
          embedded: { ...count, description: 'The same as `done`.' },
          skipped: count,
          queued: count,
          done: count,
          failed: count,
          cancelled: count,
          carriedFailures: count,
          missingFromSource: count,
        },
      },
      listing: {
        type: 'object',
        properties: {
          done: { type: 'boolean' },
          chunksPlanned: count,
          chunksDone: count,
          listCalls: count,
        },
      },
      throughput: {
        type: 'object',
        properties: { imagesPerSecond: { type: 'number', minimum: 0 }, windowSeconds: count },
      },
      etaSeconds: { type: ['integer', 'null'], minimum: 0 },
      etaIsLowerBound: { type: 'boolean' },
      bytes: count,
      model: { type: 'string' },
      dim: { type: 'integer' },
      error: schemaRef('IngestionError'),
      retrying: {
        type: 'object',
        description: 'A transient failure being retried with backoff now; gone at the next progress.',
        properties: {
          step: { type: 'string', enum: ['planning', 'chunk', 'finalizing'] },
          code: { type: 'string' },
          message: { type: 'string' },
          attempt: { type: 'integer', minimum: 1 },
          attempts: { type: 'integer', minimum: 1 },
          at: { type: 'number' },
        },
      },
      callback: {
        type: 'object',
        properties: {
          url: { type: 'string' },
          state: { type: 'string', enum: ['pending', 'delivered', 'dead'] },
          attempts: count,
          lastError: { type: 'string' },
          lastStatus: { type: 'integer' },
          deliveredAt: { type: 'number' },
        },
      },
      createdAt: { type: 'string', format: 'date-time' },
      startedAt: { type: 'string', format: 'date-time' },
      finishedAt: { type: 'string', format: 'date-time' },
      statusUrl: { type: 'string' },
      requeued: count,
    },
  },
  IngestionError: {
    type: 'object',
    required: ['code', 'message'],
    properties: { code: { type: 'string' }, message: { type: 'string' } },
  },
  IngestionList: {
    type: 'object',
    required: ['items'],
    properties: { items: { type: 'array', items: schemaRef('Ingestion') }, next: { type: 'string' } },
  },
  IngestionFailures: {
    type: 'object',
    required: ['items'],
    properties: {
      items: {
        type: 'array',
        items: {
          type: 'object',
          required: ['blob', 'etag', 'size', 'error', 'permanent', 'at'],
          properties: {
            blob: { type: 'string' },
            etag: { type: 'string' },
            size: count,
            error: schemaRef('IngestionError'),
            permanent: { type: 'boolean' },
            carried: { type: 'boolean' },
            chunk: { type: 'string' },
            at: { type: 'string', format: 'date-time' },
          },
        },
      },
      next: { type: 'string' },
    },
  },
};

const paths = {
  '/v1/ingestions': {
    post: {
      operationId: 'createIngestion',
      tags: ['ingestions'],
      summary: 'Embed every image of an Azure Blob container (resumable, incremental)',
      description:
        'Needs a storage account on the deployment. A second ingestion into an output that one is writing ' +
        'is a 400 naming it. See docs/ingestion.md.',
      parameters: [requestId],
      requestBody: { required: true, content: json(schemaRef('CreateIngestionRequest')) },
      responses: {
        '202': response('Queued.', json(schemaRef('Ingestion')), {
          Location: { $ref: '#/components/headers/IngestionLocation' },
        }),
        '400': { $ref: '#/components/responses/BadRequest' },
        '500': common['500'],
        '503': common['503'],
      },
    },
    get: {
      operationId: 'listIngestions',
      tags: ['ingestions'],
      summary: 'Ingestions, newest first',
      parameters: [...page, requestId],
      responses: {
        '200': response('A page.', json(schemaRef('IngestionList'))),
        '400': { $ref: '#/components/responses/BadRequest' },
        '500': common['500'],
        '503': common['503'],
      },
    },
  },
  '/v1/ingestions/{id}': {
    parameters: [id],
    get: {
      operationId: 'getIngestion',
      tags: ['ingestions'],
      summary: "An ingestion's state, counts, throughput over the last minute and ETA",
      parameters: [requestId],
      responses: { '200': response('The ingestion.', json(schemaRef('Ingestion'))), ...common },
    },
    delete: {
      operationId: 'cancelIngestion',
      tags: ['ingestions'],
      summary: 'Cancel: stop listing, drop chunks not started, record what was done',
      description:
        'Works in every state that is not final (queued, running, cancelling, finalizing) and always ends ' +
        '`cancelled`; a final ingestion answers 400.',
      parameters: [requestId],
      responses: {
        '202': response('Cancelling.', json(schemaRef('Ingestion'))),
        '400': { $ref: '#/components/responses/BadRequest' },
        ...common,
      },
    },
  },
  '/v1/ingestions/{id}/failures': {
    parameters: [id],
    get: {
      operationId: 'listIngestionFailures',
      tags: ['ingestions'],
      summary: 'Failed blobs with their error codes, in name order',
      parameters: [...page, requestId],
      responses: {
        '200': response('A page.', json(schemaRef('IngestionFailures'))),
        '400': { $ref: '#/components/responses/BadRequest' },
        ...common,
      },
    },
  },
  '/v1/ingestions/{id}/retry-failed': {
    parameters: [id],
    post: {
      operationId: 'retryIngestionFailures',
      tags: ['ingestions'],
      summary: "Queue a finished ingestion's failures again (only them)",
      parameters: [requestId],
      responses: {
        '202': response('Queued again; `requeued` blobs.', json(schemaRef('Ingestion'))),
        '400': { $ref: '#/components/responses/BadRequest' },
        ...common,
      },
    },
  },
};

/** The ingestion routes' part of the OpenAPI document: a fresh copy, as document.ts adds to operations. */
export function ingestionsOpenApi() {
  return structuredClone({
    tags: [
      { name: 'ingestions', description: 'Bulk ingestion of Azure Blob containers (see docs/ingestion.md).' },
    ],
    paths,
    components: {
      schemas,
      parameters: {
        IngestionId: {
          name: 'id',
          in: 'path',
          required: true,
          description: 'The ingestion id POST /v1/ingestions answered.',
          schema: { type: 'string' },
        },
      },
      headers: {
        IngestionLocation: {
          description: "The ingestion's status URL, relative to the API: /v1/ingestions/{id}.",
          required: true,
          schema: { type: 'string' },
        },
      },
    },
  });
}

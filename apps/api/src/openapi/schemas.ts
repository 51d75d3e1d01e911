/**
 * The `components.schemas` of the OpenAPI document. Where a zod schema is what the service itself parses
 * or stores, the JSON Schema is generated from it (`z.toJSONSchema`), so the document cannot drift from the
 * validation; the rest (bodies the routes assemble by hand, the OpenAI shapes, the webhook payloads) is
 * written here, next to a test (test/e2e/openapi.test.ts) that checks live answers against it.
 */
import { ERROR_CODES } from '@embedpool/core/errors';
import {
  createJobRequestSchema,
  deliveryStateSchema,
  JOB_STATES,
  jobImageSchema,
  jobLocationSchema,
  jobOutputSchema,
} from '@embedpool/core/jobs';
import { workerInfoSchema } from '@embedpool/core/queue';
import { z } from 'zod';
import { azureScoreRequestSchema } from '../azure-schema';
import { ENCODING_FORMATS } from '../openai-schema';

export type JsonSchema = Record<string, unknown>;

/** A `$ref` to a component schema. */
export const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });

const COMPONENT_URI = (id: string) => `#/components/schemas/${id}`;

/**
 * JSON Schemas (draft 2020-12, OpenAPI 3.1's dialect) of zod schemas, one component per entry; a zod schema
 * that is itself an entry is referenced, not inlined. `io: 'input'` describes what a request may send
 * (fields with defaults are optional), `'output'` what the service stores and shows (defaults filled in,
 * no unknown properties).
 */
function fromZod(entries: Record<string, z.ZodType>, io: 'input' | 'output'): Record<string, JsonSchema> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(entries)) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, { target: 'draft-2020-12', io, uri: COMPONENT_URI });
  const out: Record<string, JsonSchema> = {};
  for (const [id, schema] of Object.entries(schemas)) {
    // The document declares the dialect once (jsonSchemaDialect); an `$id` of "#/..." would only confuse.
    const { $schema: _s, $id: _i, ...rest } = schema as JsonSchema;
    out[id] = rest;
  }
  return out;
}

const describe = (schema: JsonSchema | undefined, description: string): JsonSchema => ({
  description,
  ...schema,
});

const generatedInput = fromZod(
  {
    AzureScoreRequest: azureScoreRequestSchema,
    JobImage: jobImageSchema,
    JobOutputRequest: jobOutputSchema,
    CreateJobRequest: createJobRequestSchema,
  },
  'input',
);

const generatedOutput = fromZod(
  {
    JobOutput: jobOutputSchema,
    JobLocation: jobLocationSchema,
    DeliveryState: deliveryStateSchema,
    WorkerSummary: workerInfoSchema.pick({
      id: true,
      host: true,
      model: true,
      modelId: true,
      dim: true,
      provider: true,
      randomWeights: true,
      precision: true,
    }),
  },
  'output',
);

const errorCode: JsonSchema = {
  type: 'string',
  enum: Object.keys(ERROR_CODES),
  description: 'A stable error code; its HTTP status is fixed per code (packages/core/src/errors).',
};

/** `{ code, message }` as job records and results carry it (the code is any of ours, kept as text). */
const codeMessage: JsonSchema = {
  type: 'object',
  properties: { code: { type: 'string' }, message: { type: 'string' } },
  required: ['code', 'message'],
  additionalProperties: false,
};

/** A float32 vector as JSON; a non-finite value (never expected) is written as null. */
const vector: JsonSchema = {
  type: 'array',
  items: { type: ['number', 'null'] },
  description: 'The embedding: one number per dimension (float32 values written exactly; non-finite: null).',
};

const nonNegativeInt: JsonSchema = { type: 'integer', minimum: 0 };
const epochMs: JsonSchema = { type: 'integer', minimum: 0, description: 'Unix epoch milliseconds.' };
const isoTime: JsonSchema = { type: 'string', format: 'date-time' };

const counts: JsonSchema = {
  type: 'object',
  properties: { total: nonNegativeInt, succeeded: nonNegativeInt, failed: nonNegativeInt },
  required: ['total', 'succeeded', 'failed'],
  additionalProperties: false,
};

/**
 * Every component schema, by name: the generated ones, then those written by hand.
 * Long: one literal table of JSON Schemas, no logic; each entry stands alone.
 */
export function componentSchemas(): Record<string, JsonSchema> {
  return {
    // ---- errors ------------------------------------------------------------------------------------------
    ErrorCode: errorCode,
    RowFailure: {
      type: 'object',
      description: 'One failing image: `row` is its index in the request (input_data.data or images).',
      properties: { row: nonNegativeInt, code: ref('ErrorCode'), message: { type: 'string' } },
      required: ['row', 'code', 'message'],
      additionalProperties: false,
    },
    Error: {
      type: 'object',
      description:
        'Every error of the service outside /v1/embeddings. Per-image problems are one 400 naming the ' +
        'first failing row in `row`/`message` and listing every one in `failures`.',
      properties: {
        error: {
          type: 'object',
          properties: {
            code: ref('ErrorCode'),
            message: { type: 'string' },
            row: nonNegativeInt,
            failures: { type: 'array', items: ref('RowFailure'), minItems: 1 },
          },
          required: ['code', 'message'],
          additionalProperties: false,
        },
      },
      required: ['error'],
      additionalProperties: false,
    },
    OpenAIError: {
      type: 'object',
      description: "OpenAI's error shape (every answer under /v1 except /v1/jobs); see docs/openai.md.",
      properties: {
        error: {
          type: 'object',
          properties: {
            message: { type: 'string' },
            type: {
              type: 'string',
              enum: [
                'invalid_request_error',
                'authentication_error',
                'permission_error',
                'rate_limit_error',
                'server_error',
              ],
            },
            param: {
              type: ['string', 'null'],
              enum: ['model', 'input', 'encoding_format', 'dimensions', 'user', null],
            },
            code: ref('ErrorCode'),
            failures: {
              type: 'array',
              description: "An extension to OpenAI's shape: every failing input, by its index in `input`.",
              minItems: 1,
              items: {
                type: 'object',
                properties: { index: nonNegativeInt, code: ref('ErrorCode'), message: { type: 'string' } },
                required: ['index', 'code', 'message'],
                additionalProperties: false,
              },
            },
          },
          required: ['message', 'type', 'param', 'code'],
          additionalProperties: false,
        },
      },
      required: ['error'],
      additionalProperties: false,
    },

    // ---- /score --------------------------------------------------------------------------------------------
    AzureScoreRequest: describe(
      generatedInput.AzureScoreRequest,
      'The Azure ML online-endpoint contract (pandas "split" orientation). `columns` must name "image" ' +
        'exactly once; each row of `data` has one cell per column, the "image" cell a string: a public ' +
        'http(s) URL, plain base64, or a data:image/...;base64, URI. Other columns are ignored. `index`, ' +
        'when given, has one label per row. At most MAX_IMAGES_PER_REQUEST rows (413 beyond).',
    ),
    ImageFeatures: {
      type: 'object',
      properties: { image_features: vector },
      required: ['image_features'],
      additionalProperties: false,
    },
    ScoreResponse: {
      type: 'array',
      description: 'One entry per row, in row order: the CLS token of the last layer (not normalized).',
      items: ref('ImageFeatures'),
    },

    // ---- /v1/embeddings ------------------------------------------------------------------------------------
    EmbeddingsRequest: {
      type: 'object',
      description:
        "OpenAI's embeddings request; every input string is one IMAGE (http(s) URL, data URI or base64). " +
        'Unknown fields are ignored, and null for an optional field means "not given".',
      properties: {
        model: { type: 'string', minLength: 1, description: 'Required; informational only.' },
        input: {
          oneOf: [
            { type: 'string', minLength: 1 },
            { type: 'array', items: { type: 'string' }, minItems: 1 },
          ],
          description: 'One image or 1..MAX_IMAGES_PER_REQUEST of them; token arrays are refused.',
        },
        encoding_format: { type: ['string', 'null'], enum: [...ENCODING_FORMATS, null], default: 'float' },
        dimensions: {
          type: ['integer', 'null'],
          minimum: 1,
          description: "Only the model's own dimension is accepted.",
        },
        user: { type: ['string', 'null'], description: 'Ignored.' },
      },
      required: ['model', 'input'],
    },
    EmbeddingsResponse: {
      type: 'object',
      properties: {
        object: { const: 'list' },
        data: {
          type: 'array',
          description: 'In input order.',
          items: {
            type: 'object',
            properties: {
              object: { const: 'embedding' },
              index: nonNegativeInt,
              embedding: {
                oneOf: [
                  vector,
                  {
                    type: 'string',
                    contentEncoding: 'base64',
                    description: 'encoding_format "base64": the float32 values as little-endian bytes.',
                  },
                ],
              },
            },
            required: ['object', 'index', 'embedding'],
            additionalProperties: false,
          },
        },
        model: { type: 'string', description: 'The id of the model that computed the vectors.' },
        usage: {
          type: 'object',
          description: 'Always 0: images have no tokens.',
          properties: { prompt_tokens: { const: 0 }, total_tokens: { const: 0 } },
          required: ['prompt_tokens', 'total_tokens'],
          additionalProperties: false,
        },
      },
      required: ['object', 'data', 'model', 'usage'],
      additionalProperties: false,
    },

    // ---- /v1/models -----------------------------------------------------------------------------------------
    Model: {
      type: 'object',
      description: "OpenAI's model object, with what an image-embedding client needs to know.",
      properties: {
        id: { type: 'string', description: 'The model id (e.g. facebook/dinov2-small).' },
        object: { const: 'model' },
        created: { type: 'integer', description: 'Unix seconds: when its longest-running worker started.' },
        owned_by: { type: 'string' },
        dimension: { type: 'integer', minimum: 0, description: 'Floats per vector.' },
        precision: {
          type: 'string',
          description: 'fp32, fp16 or int8 (comma-separated when workers disagree).',
        },
        random_weights: {
          type: 'boolean',
          description: 'True when the weights are a random stand-in: its vectors mean nothing.',
        },
        workers: { type: 'integer', minimum: 1, description: 'Live workers serving it.' },
      },
      required: [
        'id',
        'object',
        'created',
        'owned_by',
        'dimension',
        'precision',
        'random_weights',
        'workers',
      ],
      additionalProperties: false,
    },
    ModelList: {
      type: 'object',
      properties: { object: { const: 'list' }, data: { type: 'array', items: ref('Model') } },
      required: ['object', 'data'],
      additionalProperties: false,
    },

    // ---- health ----------------------------------------------------------------------------------------------
    Healthy: {
      type: 'object',
      properties: { status: { const: 'ok' } },
      required: ['status'],
      additionalProperties: false,
    },
    WorkerSummary: describe(
      generatedOutput.WorkerSummary,
      'A live worker (heartbeat within READY_WORKER_TTL_S).',
    ),
    Ready: {
      type: 'object',
      properties: {
        status: { const: 'ok' },
        workers: { type: 'array', items: ref('WorkerSummary'), minItems: 1 },
        warning: {
          type: 'string',
          description: 'Set when a worker serves random weights or workers disagree on the model.',
        },
      },
      required: ['status', 'workers'],
      additionalProperties: false,
    },
    NotReady: {
      type: 'object',
      properties: {
        status: { const: 'unavailable' },
        reason: { type: 'string' },
        workers: { type: 'array', items: ref('WorkerSummary') },
      },
      required: ['status', 'reason'],
      additionalProperties: false,
    },

    // ---- /v1/jobs ----------------------------------------------------------------------------------------------
    JobImage: {
      ...describe(
        generatedInput.JobImage,
        'One image: exactly one of `url` (a public http(s) URL) or `base64` (plain base64; no data URI). ' +
          '`id` (default: the index as text) is echoed in every output and must be unique in the job.',
      ),
      // zod's refinement, which JSON Schema cannot take from it.
      oneOf: [{ required: ['url'] }, { required: ['base64'] }],
    },
    JobOutputRequest: describe(
      generatedInput.JobOutputRequest,
      'Where the vectors go. `inline`: kept in Redis for JOB_RESULT_TTL_S, read with GET ' +
        "/v1/jobs/{id}/result. `blob`: written to `container` in the deployment's storage account under " +
        "`path` (a template: must contain {jobId}, may contain {date}, the job's UTC date YYYY-MM-DD) as " +
        '<path>.jsonl, <path>.npy + <path>.ids.json (npy: true) and <path>.manifest.json (written last); ' +
        '`callbackUrl` gets a signed pointer once they exist. `callback`: the vectors are POSTed, signed, ' +
        'to `url` (see the job.completed webhook).',
    ),
    CreateJobRequest: describe(
      generatedInput.CreateJobRequest,
      'An async embedding job: 1..MAX_JOB_IMAGES images. `normalize`: unit-length vectors. `priority`: ' +
        '1 (runs first) .. 1000; 100 when absent.',
    ),
    JobState: { type: 'string', enum: [...JOB_STATES] },
    JobAccepted: {
      type: 'object',
      properties: {
        id: { type: 'string' },
        state: { const: 'queued' },
        statusUrl: { type: 'string', description: 'Relative to the API: /v1/jobs/{id}.' },
      },
      required: ['id', 'state', 'statusUrl'],
      additionalProperties: false,
    },
    JobExisting: {
      type: 'object',
      description: 'The job an earlier request with the same Idempotency-Key and the same body created.',
      properties: {
        id: { type: 'string' },
        state: ref('JobState'),
        statusUrl: { type: 'string' },
        idempotent: { const: true },
      },
      required: ['id', 'state', 'statusUrl', 'idempotent'],
      additionalProperties: false,
    },
    JobOutput: describe(generatedOutput.JobOutput, 'The output as submitted, defaults filled in.'),
    JobLocation: describe(
      generatedOutput.JobLocation,
      'Where the output went, once the job finished: the result path (inline), the blobs written, or the ' +
        'callback URL.',
    ),
    DeliveryState: describe(
      generatedOutput.DeliveryState,
      'The callback delivery of the job: `pending` (attempts so far, last error), `delivered` (deliveredAt, ' +
        'epoch ms) or `dead` (dead-lettered after CALLBACK_ATTEMPTS; redrive it).',
    ),
    JobItem: {
      oneOf: [
        {
          type: 'object',
          properties: { id: { type: 'string' }, status: { const: 'failed' }, error: codeMessage },
          required: ['id', 'status', 'error'],
          additionalProperties: false,
        },
        {
          type: 'object',
          properties: {
            id: { type: 'string' },
            status: { type: 'string', enum: ['succeeded', 'pending', 'cancelled'] },
          },
          required: ['id', 'status'],
          additionalProperties: false,
        },
      ],
    },
    Job: {
      type: 'object',
      properties: {
        id: { type: 'string' },
        state: ref('JobState'),
        counts,
        createdAt: isoTime,
        startedAt: isoTime,
        finishedAt: isoTime,
        output: ref('JobOutput'),
        location: ref('JobLocation'),
        delivery: ref('DeliveryState'),
        error: { ...codeMessage, description: 'Set when the job failed as a whole.' },
        model: { type: 'string', description: 'The model that computed the vectors (once known).' },
        dim: nonNegativeInt,
        items: { type: 'array', items: ref('JobItem'), description: 'One per image, in submission order.' },
      },
      required: ['id', 'state', 'counts', 'createdAt', 'output', 'items'],
      additionalProperties: false,
    },
    JobResultItem: {
      oneOf: [
        {
          type: 'object',
          properties: { id: { type: 'string' }, image_features: vector },
          required: ['id', 'image_features'],
          additionalProperties: false,
        },
        {
          type: 'object',
          properties: { id: { type: 'string' }, error: codeMessage },
          required: ['id', 'error'],
          additionalProperties: false,
        },
      ],
    },
    JobResult: {
      type: 'object',
      properties: {
        id: { type: 'string' },
        model: { type: 'string' },
        dim: nonNegativeInt,
        items: { type: 'array', items: ref('JobResultItem'), description: 'In submission order.' },
      },
      required: ['id', 'dim', 'items'],
      additionalProperties: false,
    },

    // ---- webhook -------------------------------------------------------------------------------------------
    WebhookVectors: {
      type: 'object',
      description: "Body of a `callback` output's delivery: every item with its vector or its error.",
      properties: {
        event: { const: 'job.completed' },
        jobId: { type: 'string' },
        state: { type: 'string', enum: ['completed', 'partially_failed', 'failed'] },
        model: { type: ['string', 'null'] },
        dim: { type: ['integer', 'null'] },
        items: { type: 'array', items: ref('JobResultItem'), description: 'In submission order.' },
        error: { ...codeMessage, description: 'Only when the job failed as a whole.' },
        createdAt: epochMs,
        finishedAt: { ...epochMs, type: ['integer', 'null'] },
      },
      required: ['event', 'jobId', 'state', 'model', 'dim', 'items', 'createdAt', 'finishedAt'],
      additionalProperties: false,
    },
    WebhookBlobPointer: {
      type: 'object',
      description: "Body of a blob output's delivery (`callbackUrl`): where the blobs are, what failed.",
      properties: {
        event: { const: 'job.completed' },
        jobId: { type: 'string' },
        state: { type: 'string', enum: ['completed', 'partially_failed', 'failed'] },
        model: { type: ['string', 'null'] },
        dim: { type: ['integer', 'null'] },
        location: { oneOf: [ref('JobLocation'), { type: 'null' }] },
        counts,
        failures: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              index: nonNegativeInt,
              id: { type: ['string', 'null'] },
              code: { type: 'string' },
              message: { type: 'string' },
            },
            required: ['index', 'id', 'code', 'message'],
            additionalProperties: false,
          },
        },
        error: { ...codeMessage, description: 'Only when the job failed as a whole.' },
        createdAt: epochMs,
        finishedAt: { ...epochMs, type: ['integer', 'null'] },
      },
      required: [
        'event',
        'jobId',
        'state',
        'model',
        'dim',
        'location',
        'counts',
        'failures',
        'createdAt',
        'finishedAt',
      ],
      additionalProperties: false,
    },
  };
}

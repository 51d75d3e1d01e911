/**
 * The deployment contract: every shipped deployment (docker-compose.yml, infra/k8s, the VM scale sets'
 * cloud-init) gives each process the variables its features need, and takes the secret ones from a secret
 * store. Readers take file texts, not paths, so a test can hand them a mutated copy and see the contract fail
 * naming the variable that went missing.
 */
import { parseAllDocuments, parse as parseYaml } from 'yaml';

export type Role = 'api' | 'worker';

/** Where a process's variable comes from. */
export type Source =
  | 'literal' // written in the deployment file itself
  | 'interpolated' // compose: `${VAR...}`, from the user's shell or .env
  | 'configmap' // Kubernetes ConfigMap (envFrom)
  | 'secret' // Kubernetes Secret, or Key Vault on the VMs
  | 'file'; // the VMs' worker.env (custom data)

export interface Proc {
  deployment: 'docker-compose.yml' | 'infra/k8s' | 'infra/azure (VM scale sets)';
  name: string;
  role: Role;
  /** Azure deployments authenticate to storage with a managed identity and run a clustered Redis. */
  azure: boolean;
  vars: Map<string, Source>;
}

export interface Requirement {
  feature: string;
  roles: Role[];
  /** Satisfied when any of these is set (e.g. the three ways to reach a storage account). */
  anyOf: string[];
  /** Only for these processes. */
  when?: (p: Proc) => boolean;
  /** Must not be written in a deployment file in clear (for these processes, when a function). */
  secret?: boolean | ((p: Proc) => boolean);
}

export const REQUIREMENTS: Requirement[] = [
  // Compose's Redis has no password; Azure's URL carries the access key.
  { feature: 'the queue (Redis)', roles: ['api', 'worker'], anyOf: ['REDIS_URL'], secret: (p) => p.azure },
  {
    feature: 'Redis Cluster (Azure Managed Redis)',
    roles: ['api', 'worker'],
    anyOf: ['REDIS_CLUSTER'],
    when: (p) => p.azure,
  },
  {
    feature: 'Blob outputs and bulk ingestion',
    roles: ['api', 'worker'],
    anyOf: ['BLOB_CONNECTION_STRING', 'BLOB_SAS_URL', 'BLOB_ACCOUNT_URL'],
  },
  {
    feature: 'Blob storage through the managed identity',
    roles: ['api', 'worker'],
    anyOf: ['BLOB_ACCOUNT_URL'],
    when: (p) => p.azure,
  },
  {
    feature: 'the user-assigned managed identity (BLOB_ACCOUNT_URL)',
    roles: ['api', 'worker'],
    anyOf: ['AZURE_CLIENT_ID'],
    when: (p) => p.azure,
  },
  { feature: 'signed callbacks', roles: ['api', 'worker'], anyOf: ['CALLBACK_SECRET'], secret: true },
  // Autoscaling per pool: every process reports desired workers for every pool; a worker says its own.
  { feature: 'autoscaling per pool', roles: ['api', 'worker'], anyOf: ['AUTOSCALE_POOLS'] },
  { feature: 'autoscaling per pool', roles: ['worker'], anyOf: ['WORKER_POOL'] },
  { feature: 'API keys', roles: ['api'], anyOf: ['AUTH'] },
  { feature: 'API keys', roles: ['api'], anyOf: ['API_KEYS'], secret: true },
  { feature: 'the /metrics token', roles: ['api'], anyOf: ['METRICS_TOKEN'], secret: true },
  { feature: 'the queue dashboard', roles: ['api'], anyOf: ['DASHBOARD_TOKEN'], secret: true },
];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const objs = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObj) : []);

/** docker-compose.yml: the long-running embedpool services (one-shot model fetchers excepted). */
export function readCompose(text: string): Proc[] {
  const doc = parseYaml(text, { merge: true }) as Obj;
  const out: Proc[] = [];
  for (const [name, svc] of Object.entries((doc.services ?? {}) as Record<string, Obj>)) {
    const image = String(svc.image ?? '');
    const m = /^embedpool\/(api|worker-cpu|worker-gpu):/.exec(image);
    if (!m || svc.command !== undefined) continue;
    const vars = new Map<string, Source>();
    for (const [k, v] of Object.entries((svc.environment ?? {}) as Obj)) {
      vars.set(k, /\$\{?[A-Za-z_]/.test(String(v ?? '')) ? 'interpolated' : 'literal');
    }
    out.push({
      deployment: 'docker-compose.yml',
      name,
      role: m[1] === 'api' ? 'api' : 'worker',
      azure: false,
      vars,
    });
  }
  return out;
}

/** infra/k8s: each Deployment's container, with the ConfigMap it takes through envFrom. */
export function readK8s(files: Record<string, string>): Proc[] {
  const docs = Object.values(files).flatMap((t) =>
    parseAllDocuments(t)
      .map((d) => d.toJS() as unknown)
      .filter(isObj),
  );
  const configMaps = new Map(
    docs
      .filter((d) => d.kind === 'ConfigMap')
      .map((d) => [String((d.metadata as Obj).name), Object.keys((d.data ?? {}) as Obj)]),
  );
  const out: Proc[] = [];
  for (const d of docs.filter((x) => x.kind === 'Deployment')) {
    const spec = ((d.spec as Obj).template as Obj).spec as Obj;
    for (const c of objs(spec.containers)) {
      // The image is the process: its entry point runs the API or the worker (a Job's fetch is no Deployment).
      const image = /\/embedpool\/(api|worker-cpu|worker-gpu):/.exec(String(c.image ?? ''))?.[1];
      if (!image) continue;
      const role = image === 'api' ? 'api' : 'worker';
      const vars = new Map<string, Source>();
      for (const from of objs(c.envFrom)) {
        const ref = from.configMapRef as Obj | undefined;
        if (!ref) continue;
        const keys = configMaps.get(String(ref.name));
        if (!keys) throw new Error(`${String((d.metadata as Obj).name)}: no ConfigMap ${String(ref.name)}`);
        for (const k of keys) vars.set(k, 'configmap');
      }
      for (const e of objs(c.env)) {
        const from = e.valueFrom as Obj | undefined;
        vars.set(
          String(e.name),
          from?.secretKeyRef ? 'secret' : from?.configMapKeyRef ? 'configmap' : 'literal',
        );
      }
      out.push({
        deployment: 'infra/k8s',
        name: String((d.metadata as Obj).name),
        role,
        azure: true,
        vars,
      });
    }
  }
  return out;
}

/**
 * The VM scale sets' cloud-init: worker.env (custom data) plus the secrets the prepare script writes to
 * /run/embedpool/secrets.env from Key Vault. The VMs run workers only (main.tf says where the API runs).
 */
export function readVmss(template: string): Proc[] {
  const doc = parseYaml(template.replace(/\$\{[a-z_]+\}/g, 'x')) as Obj;
  const files = objs(doc.write_files);
  const env = String(files.find((f) => f.path === '/etc/embedpool/worker.env')?.content ?? '');
  const vars = new Map<string, Source>();
  for (const line of env.split('\n')) {
    const m = /^([A-Z][A-Z0-9_]*)=/.exec(line.trim());
    if (m) vars.set(m[1]!, 'file');
  }
  const prepare = String(files.find((f) => f.path === '/usr/local/bin/embedpool-prepare')?.content ?? '');
  const printf = /printf '([^']*)'[^\n]*>\s*\/run\/embedpool\/secrets\.env/.exec(prepare);
  for (const part of (printf?.[1] ?? '').split('\\n')) {
    const m = /^([A-Z][A-Z0-9_]*)=/.exec(part);
    if (m) vars.set(m[1]!, 'secret');
  }
  return [{ deployment: 'infra/azure (VM scale sets)', name: 'worker', role: 'worker', azure: true, vars }];
}

/** Every breach of the contract, one message each, naming the deployment, process and variable. */
export function contractViolations(procs: Proc[]): string[] {
  const out: string[] = [];
  for (const p of procs) {
    for (const r of REQUIREMENTS) {
      if (!r.roles.includes(p.role) || (r.when && !r.when(p))) continue;
      const present = r.anyOf.filter((v) => p.vars.has(v));
      const where = `${p.deployment} ${p.name}`;
      if (present.length === 0) {
        out.push(`${where}: ${r.anyOf.join(' or ')} missing (needed for ${r.feature})`);
        continue;
      }
      if (!(typeof r.secret === 'function' ? r.secret(p) : r.secret)) continue;
      for (const v of present) {
        const src = p.vars.get(v)!;
        // Compose has no secret store: the value comes from the user's shell or .env, never the file.
        if (src === 'literal' || src === 'configmap' || src === 'file') {
          out.push(`${where}: ${v} is written in the deployment (${src}); it is a secret (${r.feature})`);
        }
      }
    }
  }
  return out;
}

/**
 * Every shipped deployment wires every feature (issue 13): storage, callbacks, API keys, the metrics and
 * dashboard tokens, Redis Cluster and the managed identity on Azure, secrets from secret stores. The second
 * half proves the check can fail: a copy with one variable removed is refused, naming that variable.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { envSchema } from '@embedpool/core/config';
import { REPO_ROOT } from '@embedpool/testkit';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, stringify } from 'yaml';
import { contractViolations, type Proc, readCompose, readK8s, readVmss } from './deployment-contract';

const read = (rel: string) => readFileSync(join(REPO_ROOT, rel), 'utf8');
const K8S = ['configmap.yaml', 'api.yaml', 'worker-cpu.yaml', 'worker-gpu.yaml'];
const k8sFiles = () => Object.fromEntries(K8S.map((f) => [f, read(`infra/k8s/${f}`)]));
const TEMPLATE = 'infra/azure/cloud-init/worker.yaml.tftpl';

function all(): Proc[] {
  return [...readCompose(read('docker-compose.yml')), ...readK8s(k8sFiles()), ...readVmss(read(TEMPLATE))];
}

describe('deployment contract', () => {
  it('finds the API and the workers in every deployment', () => {
    const names = all().map((p) => `${p.deployment} ${p.name} (${p.role})`);
    expect(names).toEqual([
      'docker-compose.yml api (api)',
      'docker-compose.yml worker (worker)',
      'docker-compose.yml worker-gpu (worker)',
      'infra/k8s embedpool-api (api)',
      'infra/k8s embedpool-worker-cpu (worker)',
      'infra/k8s embedpool-worker-gpu (worker)',
      'infra/azure (VM scale sets) worker (worker)',
    ]);
  });

  it('every process has the variables its features need, secrets from secret stores', () => {
    expect(contractViolations(all())).toEqual([]);
  });

  it('every variable a deployment sets is one the service reads', () => {
    const known = new Set(Object.keys(envSchema.shape));
    for (const p of all()) {
      expect(
        [...p.vars.keys()].filter((v) => !known.has(v)),
        `${p.deployment} ${p.name}`,
      ).toEqual([]);
    }
  });

  it('every Secret key a Deployment references is in the Secret example', () => {
    const secret = parseAllDocuments(read('infra/k8s/secret.example.yaml'))
      .map((d) => d.toJS() as { kind?: string; stringData?: Record<string, string> })
      .find((d) => d.kind === 'Secret')!;
    const keys = new Set(Object.keys(secret.stringData ?? {}));
    const refs = [
      ...Object.values(k8sFiles())
        .join('\n')
        .matchAll(/secretKeyRef:\s+name: embedpool-secrets\s+key: (\S+)/g),
    ].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(10);
    expect(refs.filter((k) => !keys.has(k))).toEqual([]);
  });

  it('the VM path says where the API runs', () => {
    expect(read('infra/azure/main.tf')).toMatch(/The API is not deployed here: it runs on AKS/);
    expect(read('infra/README.md')).toMatch(/The API is not deployed by this Terraform/);
  });
});

interface K8sDoc {
  kind?: string;
  spec: { template: { spec: { containers: { env: { name: string }[] }[] } } };
}

/** Removes the env entry `name` from every container of the Deployment in `file`. */
function dropK8sEnv(files: Record<string, string>, file: string, name: string): Record<string, string> {
  const docs = parseAllDocuments(files[file]!).map((d) => d.toJS() as K8sDoc);
  for (const d of docs.filter((x) => x?.kind === 'Deployment')) {
    for (const c of d.spec.template.spec.containers) c.env = c.env.filter((e) => e.name !== name);
  }
  return { ...files, [file]: docs.map((d) => stringify(d)).join('---\n') };
}

function dropLine(text: string, line: RegExp): string {
  const out = text.replace(line, '');
  if (out === text) throw new Error(`mutation found nothing to remove: ${line}`);
  return out;
}

describe('deployment contract: a copy missing one variable fails, naming it', () => {
  const compose = read('docker-compose.yml');
  const template = read(TEMPLATE);
  const cases: [string, () => Proc[], string][] = [
    [
      'compose without CALLBACK_SECRET',
      () => readCompose(dropLine(compose, /^ {2}CALLBACK_SECRET: .*\n/m)),
      'docker-compose.yml worker: CALLBACK_SECRET missing (needed for signed callbacks)',
    ],
    [
      'compose without BLOB_CONNECTION_STRING',
      () => readCompose(dropLine(compose, /^ {2}BLOB_CONNECTION_STRING: .*\n/m)),
      'docker-compose.yml api: BLOB_CONNECTION_STRING or BLOB_SAS_URL or BLOB_ACCOUNT_URL missing (needed for Blob outputs and bulk ingestion)',
    ],
    [
      'compose without DASHBOARD_TOKEN',
      () => readCompose(dropLine(compose, /^ {6}DASHBOARD_TOKEN: .*\n/m)),
      'docker-compose.yml api: DASHBOARD_TOKEN missing (needed for the queue dashboard)',
    ],
    [
      'compose with a literal METRICS_TOKEN',
      () => readCompose(compose.replace(/METRICS_TOKEN: .*/, 'METRICS_TOKEN: a-token-in-the-file-0123')),
      'docker-compose.yml api: METRICS_TOKEN is written in the deployment (literal); it is a secret (the /metrics token)',
    ],
    [
      'AKS GPU worker without BLOB_ACCOUNT_URL',
      () => readK8s(dropK8sEnv(k8sFiles(), 'worker-gpu.yaml', 'BLOB_ACCOUNT_URL')),
      'infra/k8s embedpool-worker-gpu: BLOB_ACCOUNT_URL missing (needed for Blob storage through the managed identity)',
    ],
    [
      'AKS API without METRICS_TOKEN',
      () => readK8s(dropK8sEnv(k8sFiles(), 'api.yaml', 'METRICS_TOKEN')),
      'infra/k8s embedpool-api: METRICS_TOKEN missing (needed for the /metrics token)',
    ],
    [
      'AKS API without API_KEYS',
      () => readK8s(dropK8sEnv(k8sFiles(), 'api.yaml', 'API_KEYS')),
      'infra/k8s embedpool-api: API_KEYS missing (needed for API keys)',
    ],
    [
      'AKS without REDIS_CLUSTER in the ConfigMap',
      () =>
        readK8s({
          ...k8sFiles(),
          'configmap.yaml': dropLine(read('infra/k8s/configmap.yaml'), /^ {2}REDIS_CLUSTER: .*\n/m),
        }),
      'infra/k8s embedpool-worker-cpu: REDIS_CLUSTER missing (needed for Redis Cluster (Azure Managed Redis))',
    ],
    [
      'AKS CPU worker without WORKER_POOL',
      () => readK8s(dropK8sEnv(k8sFiles(), 'worker-cpu.yaml', 'WORKER_POOL')),
      'infra/k8s embedpool-worker-cpu: WORKER_POOL missing (needed for autoscaling per pool)',
    ],
    [
      'VMs without AZURE_CLIENT_ID',
      () => readVmss(dropLine(template, /^ {6}AZURE_CLIENT_ID=.*\n/m)),
      'infra/azure (VM scale sets) worker: AZURE_CLIENT_ID missing (needed for the user-assigned managed identity (BLOB_ACCOUNT_URL))',
    ],
    [
      'VMs without CALLBACK_SECRET from Key Vault',
      () => readVmss(template.replace(/\\nCALLBACK_SECRET=%s/, '').replace(/ "\$CALLBACK_SECRET"/, '')),
      'infra/azure (VM scale sets) worker: CALLBACK_SECRET missing (needed for signed callbacks)',
    ],
  ];

  it.each(cases)('%s', (_, procs, message) => {
    expect(contractViolations(procs())).toContain(message);
  });
});

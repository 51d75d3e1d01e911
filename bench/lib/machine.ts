import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join, resolve } from 'node:path';

export interface MachineInfo {
  hostname: string;
  cpuModel: string;
  /** Logical CPUs this process may use. */
  logicalCpus: number;
  /** Physical cores, from /proc/cpuinfo where it says; else the logical count. */
  physicalCores: number;
  cpuFlags: { avx2: boolean; avx512f: boolean; avx512vnni: boolean; amxTile: boolean };
  memoryBytes: number;
  os: string;
  kernel: string;
  arch: string;
  nodeVersion: string;
  onnxruntimeNodeVersion: string | null;
  sharpVersion: string | null;
  libvipsVersion: string | null;
  redisServerVersion: string | null;
  /** 1, 5 and 15 minute load averages when the bench started: above 0 means someone else was busy. */
  loadAverageAtStart: number[];
  gitCommit: string | null;
  gpus: string[];
}

const require = createRequire(import.meta.url);

function packageVersion(name: string): string | null {
  try {
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    return null;
  }
}

function physicalCores(logical: number): number {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const cores = new Set<string>();
    for (const block of text.split(/\n\s*\n/)) {
      const phys = /physical id\s*:\s*(\d+)/.exec(block)?.[1] ?? '0';
      const core = /core id\s*:\s*(\d+)/.exec(block)?.[1];
      if (core !== undefined) cores.add(`${phys}:${core}`);
    }
    return cores.size > 0 ? Math.min(cores.size, logical) : logical;
  } catch {
    return logical;
  }
}

function cpuFlags(): MachineInfo['cpuFlags'] {
  let flags = '';
  try {
    flags = /^flags\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
  } catch {
    // not Linux
  }
  const has = (f: string) => flags.split(' ').includes(f);
  return {
    avx2: has('avx2'),
    avx512f: has('avx512f'),
    avx512vnni: has('avx512_vnni'),
    amxTile: has('amx_tile'),
  };
}

function commandLine(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5_000 });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** Reads .git directly (HEAD, then the ref file or packed-refs): no git process. */
function gitCommit(root: string): string | null {
  try {
    let gitDir = join(root, '.git');
    // A linked worktree: `.git` is a file naming its own git dir, whose `commondir` holds the refs.
    if (statSync(gitDir).isFile()) {
      const m = /^gitdir:\s*(.+)$/m.exec(readFileSync(gitDir, 'utf8'));
      if (!m) return null;
      gitDir = resolve(root, m[1]!.trim());
    }
    const common = existsSync(join(gitDir, 'commondir'))
      ? resolve(gitDir, readFileSync(join(gitDir, 'commondir'), 'utf8').trim())
      : gitDir;
    const head = readFileSync(join(gitDir, 'HEAD'), 'utf8').trim();
    if (!head.startsWith('ref: ')) return head;
    const ref = head.slice(5);
    const loose = join(common, ref);
    if (existsSync(loose)) return readFileSync(loose, 'utf8').trim();
    const packed = readFileSync(join(common, 'packed-refs'), 'utf8');
    return (
      packed
        .split('\n')
        .find((l) => l.endsWith(` ${ref}`))
        ?.split(' ')[0] ?? null
    );
  } catch {
    return null;
  }
}

export async function machineInfo(repoRoot: string): Promise<MachineInfo> {
  const logical = os.availableParallelism();
  let sharpVersion: string | null = null;
  let libvipsVersion: string | null = null;
  try {
    const sharp = (await import('sharp')).default;
    sharpVersion = sharp.versions.sharp ?? null;
    libvipsVersion = sharp.versions.vips ?? null;
  } catch {
    // reported as null
  }
  let osName = `${os.type()} ${os.release()}`;
  try {
    osName = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? osName;
  } catch {
    // keep the kernel name
  }
  const smi = commandLine('nvidia-smi', [
    '--query-gpu=name,memory.total,driver_version',
    '--format=csv,noheader',
  ]);
  return {
    hostname: os.hostname(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    logicalCpus: logical,
    physicalCores: physicalCores(logical),
    cpuFlags: cpuFlags(),
    memoryBytes: os.totalmem(),
    os: osName,
    kernel: os.release(),
    arch: process.arch,
    nodeVersion: process.version,
    onnxruntimeNodeVersion: packageVersion('onnxruntime-node'),
    sharpVersion,
    libvipsVersion,
    redisServerVersion: /v=(\S+)/.exec(commandLine('redis-server', ['--version']) ?? '')?.[1] ?? null,
    loadAverageAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
    gitCommit: gitCommit(repoRoot),
    gpus: smi ? smi.split('\n').filter(Boolean) : [],
  };
}

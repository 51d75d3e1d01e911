import { readdirSync, readFileSync } from 'node:fs';
import { round } from './stats';

/**
 * CPU accounting from /proc, to tell how much of the machine the bench had: the machine's busy time,
 * the bench's own processes (this one, its parent or children, the private redis-server) and the rest,
 * "foreign" load from other tenants. Linux only; elsewhere every figure is null.
 */
const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every mainstream Linux build
/** Milliseconds of CPU per tick of /proc's utime and stime. */
export const TICK_MS = 1000 / TICKS_PER_SECOND;

interface MachineTicks {
  busy: number;
  steal: number;
  total: number;
}

export interface CpuSnapshot {
  at: number;
  machine: MachineTicks | null;
  own: number | null;
}

export interface CpuShare {
  /** Cores' worth of CPU in use over the interval, by anyone. */
  machineBusyCores: number | null;
  /** Cores' worth used by the bench's own processes. */
  benchCores: number | null;
  /** Cores' worth used by everything else on the machine: noise. */
  foreignCores: number | null;
  /** Cores' worth the hypervisor took (steal). */
  stealCores: number | null;
}

function machineTicks(): MachineTicks | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal guest guest_nice (guest is already in user)
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
    const busy = user + nice + system + irq + softirq;
    return { busy, steal, total: busy + idle + iowait + steal };
  } catch {
    return null;
  }
}

/** The command name and utime + stime (ticks) of a /proc `stat` line, of a process or of one thread. */
function parseStat(stat: string): { comm: string; ticks: number } {
  // The command name may hold spaces and parentheses; fields resume after the last ')'.
  const end = stat.lastIndexOf(')');
  const f = stat.slice(end + 2).split(' ');
  return { comm: stat.slice(stat.indexOf('(') + 1, end), ticks: Number(f[11]) + Number(f[12]) };
}

/** utime + stime of a process, all its threads, in ticks; null when it is gone or /proc is missing. */
export function processTicks(pid: number): number | null {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).ticks;
  } catch {
    return null;
  }
}

/**
 * utime + stime of each thread of a process, in ticks, summed by thread name: `main` for the thread whose id
 * is the process's, the kernel's `comm` for the rest (libvips names its workers `libvips worker`; Node 20
 * names none of its own, so V8's helpers, the libuv pool and worker threads read `node` together). Empty when
 * the process is gone or /proc is missing. A thread that ended between two readings takes its ticks with it.
 */
export function threadTicks(pid: number): Record<string, number> {
  const byName: Record<string, number> = {};
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return byName;
  }
  for (const tid of tids) {
    try {
      const { comm, ticks } = parseStat(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
      const name = tid === String(pid) ? 'main' : comm;
      byName[name] = (byName[name] ?? 0) + ticks;
    } catch {
      // The thread ended while we listed them.
    }
  }
  return byName;
}

export function cpuSnapshot(pids: readonly number[]): CpuSnapshot {
  const machine = machineTicks();
  let own: number | null = 0;
  for (const pid of pids) {
    const t = processTicks(pid);
    if (t === null) {
      own = null;
      break;
    }
    own += t;
  }
  return { at: performance.now(), machine, own };
}

export function cpuShare(a: CpuSnapshot, b: CpuSnapshot): CpuShare {
  const seconds = (b.at - a.at) / 1000;
  if (!a.machine || !b.machine || seconds <= 0) {
    return { machineBusyCores: null, benchCores: null, foreignCores: null, stealCores: null };
  }
  const busy = (b.machine.busy - a.machine.busy) / TICKS_PER_SECOND / seconds;
  const steal = (b.machine.steal - a.machine.steal) / TICKS_PER_SECOND / seconds;
  const bench = a.own === null || b.own === null ? null : (b.own - a.own) / TICKS_PER_SECOND / seconds;
  return {
    machineBusyCores: round(busy, 2),
    benchCores: bench === null ? null : round(bench, 2),
    foreignCores: bench === null ? null : round(Math.max(0, busy - bench), 2),
    stealCores: round(steal, 2),
  };
}

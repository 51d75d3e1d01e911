import type { Command } from 'commander';

type Register = (program: Command) => void;

interface CommandModule {
  /** The top-level commands the module registers. */
  names: readonly string[];
  load: () => Promise<Register>;
}

/**
 * Which module registers each top-level command, in the help's order. A run loads only the module of the
 * command it names: the modules' imports (onnxruntime, sharp, the Azure SDK, the SKU tables) would otherwise
 * cost every command, `embedpool status` included, more than a second at start on a 2-core VM. Help, a
 * version query or a name that is no command load them all, so commander can list them or suggest the nearest.
 */
export const COMMAND_MODULES: readonly CommandModule[] = [
  { names: ['model'], load: () => import('./commands/model').then((m) => m.registerModelCommands) },
  { names: ['embed'], load: () => import('./commands/embed').then((m) => m.registerEmbedCommand) },
  { names: ['bench'], load: () => import('./commands/bench').then((m) => m.registerBenchCommand) },
  {
    names: ['ingest', 'ingestions'],
    load: () => import('./commands/ingest').then((m) => m.registerIngestCommands),
  },
  {
    names: ['serve', 'api', 'worker'],
    load: () => import('./commands/serve').then((m) => m.registerServeCommands),
  },
  { names: ['sku', 'calibrate'], load: () => import('./commands/sku').then((m) => m.registerSkuCommands) },
  {
    names: ['submit', 'status'],
    load: () => import('./commands/submit').then((m) => m.registerSubmitCommands),
  },
  { names: ['key'], load: () => import('./commands/key').then((m) => m.registerKeyCommands) },
  { names: ['recover'], load: () => import('./commands/recover').then((m) => m.registerRecoverCommand) },
];

/** The registrations a command line needs: its command's module, or every module. */
export async function registrationsFor(argv: readonly string[]): Promise<Register[]> {
  const first = argv.find((a) => !a.startsWith('-'));
  const named = COMMAND_MODULES.find((m) => first !== undefined && m.names.includes(first));
  return Promise.all((named ? [named] : COMMAND_MODULES).map((m) => m.load()));
}

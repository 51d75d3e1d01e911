import type { Command } from 'commander';

type Register = (program: Command) => void;

/**
 * Which module registers each top-level command. A run loads only the module of the command it names: the
 * modules' imports (onnxruntime, sharp, the Azure SDK, the SKU tables) would otherwise cost every command,
 * `embedpool status` included, more than a second at start on a 2-core VM. Help, a version query or a name
 * that is no command load them all, so commander can list them or suggest the nearest.
 */
export const COMMAND_MODULES: Record<string, () => Promise<Register>> = {
  model: () => import('./commands/model').then((m) => m.registerModelCommands),
  embed: () => import('./commands/embed').then((m) => m.registerEmbedCommand),
  bench: () => import('./commands/bench').then((m) => m.registerBenchCommand),
  ingest: () => import('./commands/ingest').then((m) => m.registerIngestCommands),
  ingestions: () => import('./commands/ingest').then((m) => m.registerIngestCommands),
  serve: () => import('./commands/serve').then((m) => m.registerServeCommands),
  api: () => import('./commands/serve').then((m) => m.registerServeCommands),
  worker: () => import('./commands/serve').then((m) => m.registerServeCommands),
  sku: () => import('./commands/sku').then((m) => m.registerSkuCommands),
  calibrate: () => import('./commands/sku').then((m) => m.registerSkuCommands),
  submit: () => import('./commands/submit').then((m) => m.registerSubmitCommands),
  status: () => import('./commands/submit').then((m) => m.registerSubmitCommands),
  key: () => import('./commands/key').then((m) => m.registerKeyCommands),
  recover: () => import('./commands/recover').then((m) => m.registerRecoverCommand),
};

/** The registrations a command line needs: its command's module, or every module (in the help's order). */
export async function registrationsFor(argv: readonly string[]): Promise<Register[]> {
  const first = argv.find((a) => !a.startsWith('-'));
  const named = first === undefined ? undefined : COMMAND_MODULES[first];
  const loaders = named ? [named] : [...new Set(Object.values(COMMAND_MODULES))];
  const registers = await Promise.all(loaders.map((load) => load()));
  return [...new Set(registers)];
}

import { Command } from 'commander';
import { registerBenchCommand } from './commands/bench';
import { registerEmbedCommand } from './commands/embed';
import { registerIngestCommands } from './commands/ingest';
import { registerKeyCommands } from './commands/key';
import { registerModelCommands } from './commands/model';
import { registerRecoverCommand } from './commands/recover';
import { registerServeCommands } from './commands/serve';
import { registerSkuCommands } from './commands/sku';
import { registerSubmitCommands } from './commands/submit';
import { embedpoolVersion } from './commands/version';

const program = new Command()
  .name('embedpool')
  .description('DINOv2 image embeddings: API, queue workers and tools')
  .version(embedpoolVersion(), '-V, --version', 'print the version')
  .showHelpAfterError();

registerModelCommands(program);
registerEmbedCommand(program);
registerBenchCommand(program);
registerIngestCommands(program);
registerServeCommands(program);
registerSkuCommands(program);
registerSubmitCommands(program);
registerKeyCommands(program);
registerRecoverCommand(program);

await program.parseAsync(process.argv);

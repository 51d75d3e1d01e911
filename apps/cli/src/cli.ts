import { Command } from 'commander';
import { registrationsFor } from './command-table';
import { embedpoolVersion } from './commands/version';

const program = new Command()
  .name('embedpool')
  .description('DINOv2 image embeddings: API, queue workers and tools')
  .version(embedpoolVersion(), '-V, --version', 'print the version')
  .showHelpAfterError();

for (const register of await registrationsFor(process.argv.slice(2))) register(program);

await program.parseAsync(process.argv);

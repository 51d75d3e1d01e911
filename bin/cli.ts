import { Command } from 'commander';
import { registerEmbedCommand } from './commands/embed';
import { registerModelCommands } from './commands/model';
import { registerServeCommands } from './commands/serve';

const program = new Command()
  .name('embedpool')
  .description('DINOv2 image embeddings: API, queue workers and tools')
  .showHelpAfterError();

registerModelCommands(program);
registerEmbedCommand(program);
registerServeCommands(program);

await program.parseAsync(process.argv);

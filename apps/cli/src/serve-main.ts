/**
 * The service processes alone (`serve`, `api`, `worker`), without the tools: the compiled entry of the
 * container images (dist/serve.mjs). The API image runs `api` from here and so never loads onnxruntime or
 * sharp, which it does not contain.
 */
import { Command } from 'commander';
import { registerServeCommands } from './commands/serve';
import { embedpoolVersion } from './commands/version';

process.env.ORT_DISABLE_TELEMETRY ??= '1';
const program = new Command()
  .name('embedpool')
  .description('DINOv2 image embeddings: the API and queue workers')
  .version(embedpoolVersion(), '-V, --version', 'print the version')
  .showHelpAfterError();
registerServeCommands(program);
await program.parseAsync(process.argv);

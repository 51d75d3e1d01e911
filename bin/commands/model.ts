import type { Command } from 'commander';
import { registerModelBuildCommand } from './model-build';
import { registerModelFetchCommand } from './model-fetch';
import { registerModelInfoCommand } from './model-info';

export function registerModelCommands(program: Command): void {
  const model = program.command('model').description('build, download and inspect ONNX models');
  registerModelBuildCommand(model);
  registerModelFetchCommand(model);
  registerModelInfoCommand(model);
}

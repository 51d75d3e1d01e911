import type { Command } from 'commander';
import { registerModelBuildCommand } from './model-build';
import { registerModelCompareCommand } from './model-compare';
import { registerModelFetchCommand } from './model-fetch';
import { registerModelInfoCommand } from './model-info';
import { registerModelQuantizeCommand } from './model-quantize';

export function registerModelCommands(program: Command): void {
  const model = program.command('model').description('build, download and inspect ONNX models');
  registerModelBuildCommand(model);
  registerModelFetchCommand(model);
  registerModelInfoCommand(model);
  registerModelQuantizeCommand(model);
  registerModelCompareCommand(model);
}

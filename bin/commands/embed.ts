import type { Command } from 'commander';

export function registerEmbedCommand(_program: Command): void {}

import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMMAND_MODULES, registrationsFor } from './command-table';

const names = (program: Command) => program.commands.map((c) => c.name()).sort();
const TABLE_NAMES = COMMAND_MODULES.flatMap((m) => m.names);

describe('command table', () => {
  it('names every top-level command the modules register, and nothing else', async () => {
    const all = new Command();
    for (const register of await registrationsFor(['--help'])) register(all);
    expect(names(all)).toEqual([...TABLE_NAMES].sort());
  });

  it("loads only the named command's module, and that module registers the command", async () => {
    for (const name of TABLE_NAMES) {
      const registers = await registrationsFor([name, '--help']);
      expect(registers, name).toHaveLength(1);
      const program = new Command();
      registers[0]!(program);
      expect(names(program), name).toContain(name);
    }
  });

  it('loads every module for help, a version query, `help <command>` or a name that is no command', async () => {
    // Nine modules register commands: model, embed, bench, ingest, serve, sku, submit, key, recover.
    for (const argv of [[], ['--help'], ['-V'], ['help', 'status'], ['statsu']]) {
      expect((await registrationsFor(argv)).length, argv.join(' ')).toBe(9);
    }
  });
});

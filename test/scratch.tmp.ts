import { execFileSync, spawnSync } from 'node:child_process';
import { parityImages } from '@embedpool/core/testing';
import { startStack, testConfig } from './support/stack';
const stack = await startStack(testConfig());
const imgs = parityImages().filter((i) => i.reference).slice(0, 2).map((i) => i.path);
for (const args of [
  ['submit', ...imgs, 'README.md', '--url', stack.api.url, '--wait'],
]) {
  const r = spawnSync(process.execPath, ['bin/embedpool.js', ...args], { encoding: 'utf8' });
  console.log('rc', r.status, '\nSTDERR:\n' + r.stderr, '\nSTDOUT:\n' + r.stdout.slice(0, 300));
  const id = /job ([0-9a-f-]{36})/.exec(r.stderr)?.[1]!;
  const s = spawnSync(process.execPath, ['bin/embedpool.js', 'status', id, '--url', stack.api.url], { encoding: 'utf8' });
  console.log(s.stdout, s.stderr);
}
await stack.stop();
process.exit(0);

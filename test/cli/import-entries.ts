// Imports both entry points as the CLI does (a child process of entry-points.test.ts): neither may start.
const api = await import('@embedpool/api/main');
const worker = await import('@embedpool/worker/main');
console.log(`imported: ${api.main.name} ${worker.main.name}`);

export {};

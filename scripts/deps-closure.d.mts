export function runtimeClosure(workspace: string, lock?: unknown): string[];
export function prune(workspace: string, nodeModules?: string): string[];

export function buildDist(options?: { outdir?: string; typecheck?: boolean }): Promise<unknown>;

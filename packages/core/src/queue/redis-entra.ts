import type { AccessToken, TokenCredential } from '@azure/identity';
import type { Cluster, Redis } from 'ioredis';

/** The scope of Azure Managed Redis (and Azure Cache for Redis) data-plane tokens. */
export const REDIS_ENTRA_SCOPE = 'https://redis.azure.com/.default';

/** Refresh this long before expiry when the token carries no refresh hint of its own. */
const REFRESH_BEFORE_EXPIRY_MS = 5 * 60_000;
/** After a failed refresh, try again this soon (the old token is still good until it expires). */
const RETRY_AFTER_FAILURE_MS = 30_000;
const MIN_DELAY_MS = 1_000;

/**
 * When to fetch the next token: the credential's own `refreshAfterTimestamp` when it gives one, else five
 * minutes before expiry (a quarter of the lifetime for short-lived tokens), never sooner than a second.
 */
export function nextRefreshDelay(token: AccessToken, now = Date.now()): number {
  const lifetime = token.expiresOnTimestamp - now;
  const hinted = token.refreshAfterTimestamp ? token.refreshAfterTimestamp - now : undefined;
  const margin = Math.min(REFRESH_BEFORE_EXPIRY_MS, lifetime / 4);
  return Math.max(MIN_DELAY_MS, Math.floor(hinted ?? lifetime - margin));
}

/** The `oid` claim of a Microsoft Entra access token: the principal's object id, Redis's user name. */
export function tokenObjectId(token: string): string | undefined {
  const payload = token.split('.')[1];
  if (!payload) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { oid?: unknown };
    return typeof claims.oid === 'string' ? claims.oid : undefined;
  } catch {
    return undefined;
  }
}

type Client = Redis | Cluster;

/**
 * Microsoft Entra ID authentication for every Redis connection of this process. Azure Managed Redis takes
 * an access token as the password and the principal's object id as the user name; the token expires
 * (about an hour), so before it does a fresh one is fetched and sent with AUTH on every open connection
 * (Azure closes connections whose token expired), and written into the options that reconnects and
 * duplicates (BullMQ's blocking connections) are made from.
 */
export class EntraRedisAuth {
  private token: AccessToken | undefined;
  private first: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly clients = new Set<Client>();
  private closed = false;

  constructor(
    private readonly credential: TokenCredential,
    private readonly opts: {
      /** The principal's object id; read from the token's `oid` claim when absent. */
      user?: string;
      scope?: string;
      onError?: (err: Error) => void;
      onRefresh?: (expiresOn: number) => void;
    } = {},
  ) {}

  /** Fetches the first token (once); connections can be made after it resolves. */
  ready(): Promise<void> {
    this.first ??= this.refresh(true);
    return this.first;
  }

  /** User name and token for a new connection. Throws before `ready()` resolved. */
  credentials(): { username: string; password: string } {
    const token = this.token;
    if (!token) throw new Error('Redis Entra authentication is not ready: await its ready() first');
    const username = this.opts.user ?? tokenObjectId(token.token);
    if (!username)
      throw new Error('REDIS_ENTRA_USER is not set and the access token has no oid claim to use instead');
    return { username, password: token.token };
  }

  /** Keeps a client (and every duplicate made from it) authenticated with the current token. */
  track<T extends Client>(client: T): T {
    this.clients.add(client);
    client.once('end', () => this.clients.delete(client));
    const original = client.duplicate.bind(client) as (...args: unknown[]) => T;
    (client as unknown as { duplicate: (...args: unknown[]) => T }).duplicate = (...args: unknown[]) =>
      this.track(original(...args));
    return client;
  }

  get tracked(): number {
    return this.clients.size;
  }

  private async refresh(first: boolean): Promise<void> {
    if (this.closed) return;
    try {
      const token = await this.credential.getToken(this.opts.scope ?? REDIS_ENTRA_SCOPE);
      if (!token) throw new Error('the credential returned no token for Redis');
      this.token = token;
      if (!first) await this.reauthenticate();
      this.opts.onRefresh?.(token.expiresOnTimestamp);
      this.schedule(nextRefreshDelay(token));
    } catch (err) {
      if (first) throw err;
      this.opts.onError?.(err as Error);
      const left = (this.token?.expiresOnTimestamp ?? 0) - Date.now();
      this.schedule(Math.max(MIN_DELAY_MS, Math.min(RETRY_AFTER_FAILURE_MS, left / 2)));
    }
  }

  private schedule(delay: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(false), delay);
    this.timer.unref();
  }

  /** New credentials into each client's options (for reconnects) and AUTH on each open connection. */
  private async reauthenticate(): Promise<void> {
    const { username, password } = this.credentials();
    const sends: Promise<unknown>[] = [];
    for (const client of this.clients) {
      let connections: Redis[];
      if ((client as Cluster).isCluster === true) {
        const cluster = client as Cluster;
        // The cluster makes new node connections (after MOVED, failover, reconnect) from these options.
        const redisOptions = cluster.options.redisOptions ?? {};
        redisOptions.username = username;
        redisOptions.password = password;
        cluster.options.redisOptions = redisOptions;
        connections = cluster.nodes('all');
      } else {
        connections = [client as Redis];
      }
      for (const r of connections) {
        r.options.username = username;
        r.options.password = password;
        if (r.status === 'ready') sends.push(r.auth(username, password).catch((e) => this.opts.onError?.(e)));
      }
    }
    await Promise.all(sends);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.clients.clear();
  }
}

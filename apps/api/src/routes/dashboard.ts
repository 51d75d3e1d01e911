import { timingSafeEqual } from 'node:crypto';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import { type RequestHandler, Router } from 'express';

export const DASHBOARD_PATH = '/admin/queues';

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Operators only: `Authorization: Bearer <DASHBOARD_TOKEN>`, or basic auth with the token as password (browsers). */
export function dashboardAuth(token: string): RequestHandler {
  return (req, res, next) => {
    const header = req.get('authorization') ?? '';
    const [scheme, value = ''] = header.split(' ', 2);
    let given = '';
    if (scheme?.toLowerCase() === 'bearer') given = value;
    else if (scheme?.toLowerCase() === 'basic')
      given = Buffer.from(value, 'base64').toString().split(':').slice(1).join(':');
    if (given && same(given, token)) return next();
    res
      .status(401)
      .set('WWW-Authenticate', 'Basic realm="embedpool queues"')
      .json({ error: { code: 'UNAUTHORIZED', message: 'the queue dashboard needs DASHBOARD_TOKEN' } });
  };
}

/** Bull Board over the service's queues, mounted behind its own token (separate from API keys). */
export function dashboardRouter(token: string, queues: Queue[]): Router {
  const adapter = new ExpressAdapter();
  adapter.setBasePath(DASHBOARD_PATH);
  createBullBoard({
    queues: queues.map((q) => new BullMQAdapter(q, { readOnlyMode: false })),
    serverAdapter: adapter,
  });
  const router = Router();
  router.use(DASHBOARD_PATH, dashboardAuth(token), adapter.getRouter());
  return router;
}

import type { Response } from 'express';

export class ClientGoneError extends Error {
  constructor() {
    super('client closed the connection before the answer');
    this.name = 'ClientGoneError';
  }
}

/**
 * Aborts `signal` (with a ClientGoneError) when the client closes the connection before the answer is
 * written, so the job is cancelled and no worker spends time on it. Call `release` once the wait is over.
 */
export function watchClientGone(res: Response): { signal: AbortSignal; release: () => void } {
  const gone = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) gone.abort(new ClientGoneError());
  };
  res.on('close', onClose);
  return { signal: gone.signal, release: () => res.off('close', onClose) };
}

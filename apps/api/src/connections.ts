import type http from 'node:http';
import type { Socket } from 'node:net';

/**
 * Counts requests in flight per socket, so shutdown can drop every connection that is not mid-request.
 * Node's closeIdleConnections() only drops keep-alive sockets that have served a request: a socket a
 * client opened ahead of need (undici does) would otherwise hold server.close() for its whole keep-alive.
 */
export function trackConnections(server: http.Server): { dropIdle(): void } {
  const inFlight = new Map<Socket, number>();
  let draining = false;
  server.on('connection', (socket: Socket) => {
    inFlight.set(socket, 0);
    socket.once('close', () => inFlight.delete(socket));
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    res.once('close', () => {
      const left = (inFlight.get(socket) ?? 1) - 1;
      inFlight.set(socket, left);
      if (draining && left === 0) socket.destroySoon();
    });
  });
  return {
    dropIdle() {
      draining = true;
      for (const [socket, n] of inFlight) if (n === 0) socket.destroySoon();
    },
  };
}

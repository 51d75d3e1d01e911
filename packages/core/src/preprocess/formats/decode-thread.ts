import { parentPort, threadId } from 'node:worker_threads';
import { EmbedpoolError, toEmbedpoolError } from '../../errors';
import { decodeBmp } from './bmp';
import { decodeHeic, probeHeic } from './heic';
import { decodeIcoDib, parseIco } from './ico';
import { decodeJpeg2000 } from './jpeg2000';
import { decodePnm } from './pnm';
import type { DecodeReply, DecodeRequest } from './protocol';
import type { Raster, RasterHeader } from './raster';
import { decodeTga } from './tga';

// The decoders here are synchronous JavaScript or WebAssembly: they run in this thread so that a large or
// hostile file blocks neither the API's nor the worker's event loop, and a decode that runs past its time
// limit can be stopped by terminating the thread.

const port = parentPort;
if (!port) throw new Error('decode-thread must run in a worker thread');

async function handle(req: DecodeRequest): Promise<{ header: RasterHeader; raster?: Raster }> {
  const { bytes, maxInputPixels } = req;
  if (req.op === 'probe') {
    if (req.format !== 'heic') throw new EmbedpoolError('INTERNAL', `no threaded probe for ${req.format}`);
    return { header: probeHeic(bytes, maxInputPixels) };
  }
  let raster: Raster;
  switch (req.format) {
    case 'bmp':
      raster = decodeBmp(bytes, maxInputPixels);
      break;
    case 'ico':
      raster = decodeIcoDib(bytes, parseIco(bytes), maxInputPixels);
      break;
    case 'ppm':
      raster = decodePnm(bytes, maxInputPixels);
      break;
    case 'tga':
      raster = decodeTga(bytes, maxInputPixels);
      break;
    case 'jp2':
      raster = await decodeJpeg2000(bytes, maxInputPixels);
      break;
    case 'heic':
      raster = decodeHeic(bytes, maxInputPixels);
      break;
  }
  return { header: { width: raster.width, height: raster.height }, raster };
}

port.on('message', (req: DecodeRequest) => {
  handle(req).then(
    ({ header, raster }) => {
      const reply: DecodeReply = { id: req.id, ok: true, header, threadId, ...(raster ? { raster } : {}) };
      port.postMessage(reply, raster ? [raster.data.buffer as ArrayBuffer] : []);
    },
    (err: unknown) => {
      // WebAssembly traps (out of bounds, out of memory) are decode failures of this input, not crashes.
      const e = err instanceof EmbedpoolError ? err : toEmbedpoolError(err, 'IMAGE_DECODE_FAILED');
      const reply: DecodeReply = {
        id: req.id,
        ok: false,
        error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) },
      };
      port.postMessage(reply);
      // After a WebAssembly trap the module's memory may be inconsistent: end this thread, the pool
      // starts a fresh one for the next image.
      if (!(err instanceof EmbedpoolError)) setImmediate(() => process.exit(1));
    },
  );
});

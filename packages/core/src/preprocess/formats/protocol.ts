import type { ErrorCode } from '../../errors';
import type { ExtraFormat, Raster, RasterHeader } from './raster';

export interface DecodeRequest {
  id: number;
  /** `probe` reads the header only (HEIC, whose container needs libheif); `decode` returns the pixels. */
  op: 'probe' | 'decode';
  format: ExtraFormat;
  bytes: Uint8Array;
  maxInputPixels: number;
}

export type DecodeReply =
  | { id: number; ok: true; header: RasterHeader; raster?: Raster; threadId: number }
  | { id: number; ok: false; error: { code: ErrorCode; message: string; details?: Record<string, unknown> } };

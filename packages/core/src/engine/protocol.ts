import type { ErrorBody } from '../errors';
import type { ModelInfo } from './model-info';
import type { ExecutionProvider, RuntimeOptions } from './session-options';

/** Messages between the engine (main thread) and an inference thread. */
export interface InitMessage {
  type: 'init';
  modelPath: string;
  runtime: RuntimeOptions;
}

export interface RunMessage {
  type: 'run';
  id: number;
  /** Transferred to the thread and transferred back in the reply, so one buffer serves batch after batch. */
  input: Float32Array;
  count: number;
  height: number;
  width: number;
}

export type ToThread = InitMessage | RunMessage;

export interface ReadyReply {
  type: 'ready';
  info: ModelInfo;
  provider: ExecutionProvider;
  /** Set when the configured provider could not start and the thread fell back to CPU. */
  fallbackReason?: string;
}

export interface ResultReply {
  type: 'result';
  id: number;
  input: Float32Array;
  embeddings: Float32Array;
  dim: number;
  inferMs: number;
}

export interface ErrorReply {
  type: 'error';
  id: number | null;
  input?: Float32Array;
  error: ErrorBody;
}

export type FromThread = ReadyReply | ResultReply | ErrorReply;

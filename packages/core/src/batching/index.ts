export { type BatchEvent, type BatchItem, MicroBatcher, type MicroBatcherOptions } from './micro-batcher';

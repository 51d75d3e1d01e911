export { isProcessEntry, refuseArguments } from './entry';
export { SERVICE_NODE_FLAGS } from './node-flags';
export { bootConfig, type ProcessContext, runProcess } from './run-process';
export { ShutdownOrder, type Stopper, stopOnSignals } from './shutdown';

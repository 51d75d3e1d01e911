export { isProcessEntry, refuseArguments } from './entry';
export { bootConfig, type ProcessContext, runProcess } from './run-process';
export { ShutdownOrder, type Stopper, stopOnSignals } from './shutdown';

/**
 * Entry of the bench's child processes (see lib/children.ts): `node --import tsx bench/child.ts <kind>`.
 * Each kind answers requests over the IPC channel until the parent says exit.
 */
import { serveRequests } from './lib/children';
import { type ColdStartInput, runColdStart } from './lib/cold-start';
import { type DecodeAloneInput, runDecodeAlone } from './lib/decode-alone';
import { type MicroInput, runMicro } from './lib/micro';
import { type PreprocessInput, runPreprocess } from './lib/preprocess';
import { type RawInput, runRaw } from './lib/raw';
import { createServerHandlers } from './lib/server';

const kind = process.argv[2];
switch (kind) {
  case 'raw':
    serveRequests({ run: (arg: RawInput) => runRaw(arg) });
    break;
  case 'preprocess':
    serveRequests({ run: (arg: PreprocessInput) => runPreprocess(arg) });
    break;
  case 'micro':
    serveRequests({ run: (arg: MicroInput) => runMicro(arg) });
    break;
  case 'coldstart':
    serveRequests({ run: (arg: ColdStartInput) => runColdStart(arg) });
    break;
  case 'decode':
    serveRequests({ run: (arg: DecodeAloneInput) => runDecodeAlone(arg) });
    break;
  case 'server':
    serveRequests(createServerHandlers());
    break;
  default:
    process.stderr.write(`bench child: unknown kind ${kind}\n`);
    process.exit(2);
}

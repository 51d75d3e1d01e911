/**
 * Node (V8) flags every long-running embedpool process starts with: the images' ENTRYPOINTs, `npm start`,
 * the `embedpool` executable, the pipeline benchmark and the soak all pass exactly these (test/repo.test.ts
 * and test/infra keep them in step). They cannot be set from the config at boot: V8 sizes its heap before any
 * JavaScript runs.
 *
 * `--initial-old-space-size=256`: the API and the worker keep a small heap (about 40 MB live) while moving
 * large short-lived buffers and strings (base64 bodies, image bytes, pixels). On so small a heap V8 sets the
 * old generation's limit only ~30 MB above what is live, less than the young generation can promote, so it
 * started a full mark-compact about four times a second (`--trace-incremental-marking`: 290 starts in a
 * 2-minute pipeline run, against 19 with this flag). A 256 MB floor leaves only the external-memory trigger.
 * CPU per image under load fell by 4-16% on Node 20 and 14-31% on Node 24 (docs/performance.md, "Sixth
 * round"); the heap still stays near its live size (43-59 MB), since the external-memory trigger collects.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=256'];

/**
 * Test kit: an independent reader for the `.npy` files npy.ts writes (v1.0/2.0 headers, little-endian
 * float32, C order), used to check the writer rather than trusting it. Not exported from the package.
 */
export interface ParsedNpy {
  major: number;
  minor: number;
  /** Offset of the first data byte (preamble + header). */
  dataOffset: number;
  header: string;
  descr: string;
  fortranOrder: boolean;
  shape: number[];
  data: Float32Array;
}

export function readNpy(buf: Buffer): ParsedNpy {
  if (buf.subarray(0, 6).toString('latin1') !== '\x93NUMPY') throw new Error('bad npy magic');
  const major = buf[6]!;
  const minor = buf[7]!;
  const lenBytes = major === 1 ? 2 : 4;
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const dataOffset = 8 + lenBytes + headerLen;
  const header = buf.subarray(8 + lenBytes, dataOffset).toString('latin1');
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new Error(`bad npy header ${JSON.stringify(header)}`);
  }
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  if (descr !== '<f4') throw new Error(`unsupported dtype ${descr}`);
  const count = shape.reduce((a, b) => a * b, 1);
  const bytes = buf.subarray(dataOffset);
  if (bytes.length !== count * 4)
    throw new Error(`npy holds ${bytes.length} data bytes, expected ${count * 4}`);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = bytes.readFloatLE(i * 4);
  return { major, minor, dataOffset, header, descr, fortranOrder: fortran === 'True', shape, data };
}

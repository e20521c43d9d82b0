// Helpers shared by the Node SDK scripts in this folder.
import assert from 'node:assert/strict';

/** `call` must reject with exactly `Type` (an OpenAI SDK APIError subclass); returns the error. */
export async function expectError(Type, call, { status, code, contains } = {}) {
  let got;
  try {
    got = await call();
  } catch (err) {
    assert.ok(err?.constructor === Type, `expected ${Type.name}, got ${err?.constructor?.name}: ${err}`);
    if (status !== undefined) assert.equal(err.status, status, String(err));
    if (code !== undefined) assert.equal(err.code, code, String(err));
    if (contains !== undefined) assert.ok(String(err.message).includes(contains), `${contains} not in ${err.message}`);
    assert.equal(err.headers.get('x-signalbox-error-code'), err.code);
    return err;
  }
  assert.fail(`expected ${Type.name}, the call returned ${JSON.stringify(got)?.slice(0, 200)}`);
}

/** A real PCM WAV file (16-bit mono sine at 16 kHz). */
export function toneWav(seconds = 0.25, rate = 16000, freq = 440) {
  const n = Math.floor(seconds * rate);
  const buf = Buffer.alloc(44 + n * 2);
  buf.write('RIFF', 0, 'ascii');
  buf.writeUInt32LE(36 + n * 2, 4);
  buf.write('WAVEfmt ', 8, 'ascii');
  buf.writeUInt32LE(16, 16); // fmt chunk size
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28); // byte rate
  buf.writeUInt16LE(2, 32); // block align
  buf.writeUInt16LE(16, 34); // bits per sample
  buf.write('data', 36, 'ascii');
  buf.writeUInt32LE(n * 2, 40);
  for (let i = 0; i < n; i++) {
    buf.writeInt16LE(Math.round(12000 * Math.sin((2 * Math.PI * freq * i) / rate)), 44 + i * 2);
  }
  return buf;
}

/** The bytes are one complete PCM WAV file: RIFF size, fmt and data chunk agree with the length. */
export function checkWav(buf) {
  assert.equal(buf.toString('ascii', 0, 4), 'RIFF');
  assert.equal(buf.toString('ascii', 8, 12), 'WAVE');
  assert.equal(buf.readUInt32LE(4) + 8, buf.length, 'RIFF size matches: not truncated');
  let off = 12;
  let fmt = null;
  while (off + 8 <= buf.length) {
    const id = buf.toString('ascii', off, off + 4);
    const size = buf.readUInt32LE(off + 4);
    if (id === 'fmt ') fmt = { format: buf.readUInt16LE(off + 8), channels: buf.readUInt16LE(off + 10) };
    if (id === 'data') {
      assert.ok(fmt, 'fmt chunk before data');
      assert.equal(off + 8 + size, buf.length, 'data chunk runs to the end');
      return fmt;
    }
    off += 8 + size + (size % 2);
  }
  assert.fail('no data chunk');
}

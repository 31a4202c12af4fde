// Streaming sample-rate conversion for the microphone: windowed-sinc interpolation with a
// low-pass at 0.45 x the lower rate, so 44.1 or 48 kHz speech reaches 16 kHz without
// aliasing (plain decimation would fold everything above 8 kHz back into the voice band).
//
// Used inside the AudioWorklet (pcm-worklet.js) and testable in a page: no DOM, no globals.
// The kernel is tabulated once (TABLE_RES points per input sample, linearly interpolated),
// so a 48 kHz stream costs about 100 multiply-adds per output sample.

const TABLE_RES = 256;

export class Resampler {
  /**
   * @param {number} inRate input rate, Hz
   * @param {number} outRate output rate, Hz
   * @param {number} zeroCrossings kernel half-width in zero crossings of the low-pass
   */
  constructor(inRate, outRate = 16000, zeroCrossings = 16) {
    this.inRate = inRate;
    this.outRate = outRate;
    this.step = inRate / outRate; // input samples per output sample
    this.passthrough = inRate === outRate;
    // cutoff in cycles per input sample
    this.fc = (0.45 * Math.min(inRate, outRate)) / inRate;
    this.half = Math.ceil(zeroCrossings / (2 * this.fc)); // half-width, input samples
    this.table = kernelTable(this.fc, this.half);
    this.buf = new Float32Array(4096);
    this.len = this.half; // start with `half` samples of silence: the kernel's left side
    this.pos = this.half; // position of the next output sample, in input samples
  }

  /** Push input samples; returns the output samples they complete (Float32Array). */
  push(input) {
    if (this.passthrough) return Float32Array.from(input);
    this.#append(input);
    const half = this.half;
    const n = Math.max(0, Math.ceil((this.len - half - this.pos) / this.step));
    const out = new Float32Array(n);
    const buf = this.buf;
    const table = this.table;
    let pos = this.pos;
    for (let i = 0; i < n; i++) {
      const first = Math.ceil(pos - half);
      const last = Math.floor(pos + half);
      let acc = 0;
      for (let k = Math.max(first, 0); k <= last; k++) {
        const t = Math.abs(pos - k) * TABLE_RES;
        const j = t | 0;
        const w = table[j] + (table[j + 1] - table[j]) * (t - j);
        acc += buf[k] * w;
      }
      out[i] = acc;
      pos += this.step;
    }
    // Keep only what later outputs still need.
    const drop = Math.max(0, Math.floor(pos - half) - 1);
    if (drop > 0) {
      buf.copyWithin(0, drop, this.len);
      this.len -= drop;
      pos -= drop;
    }
    this.pos = pos;
    return out;
  }

  #append(input) {
    if (this.len + input.length > this.buf.length) {
      const bigger = new Float32Array(Math.max(this.buf.length * 2, this.len + input.length));
      bigger.set(this.buf.subarray(0, this.len));
      this.buf = bigger;
    }
    this.buf.set(input, this.len);
    this.len += input.length;
  }
}

// h(t) = 2 fc sinc(2 fc t) x Blackman window over [-half, half], for t >= 0.
function kernelTable(fc, half) {
  const size = half * TABLE_RES + 2;
  const table = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    const t = i / TABLE_RES;
    if (t > half) break;
    const x = 2 * fc * t;
    const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
    const u = 0.5 + t / (2 * half); // window position 0.5..1 for t = 0..half
    const blackman = 0.42 - 0.5 * Math.cos(2 * Math.PI * u) + 0.08 * Math.cos(4 * Math.PI * u);
    table[i] = 2 * fc * sinc * blackman;
  }
  return table;
}

/** Float samples in [-1, 1] to PCM16 (clipped), into `out` from `offset`. */
export function toPcm16(samples, out, offset = 0) {
  for (let i = 0; i < samples.length; i++) {
    const v = Math.max(-1, Math.min(1, samples[i]));
    out[offset + i] = v < 0 ? Math.round(v * 0x8000) : Math.round(v * 0x7fff);
  }
}

// AudioWorklet processor: the microphone as 100 ms frames of 16 kHz mono PCM16, the live
// ingest protocol's unit (3200 bytes). Runs on the audio thread, so the main thread's work
// (drawing, networking) never makes it drop samples. Each frame is transferred (not copied)
// to the page with its RMS level, for the loudness meter.

import { Resampler, toPcm16 } from "./resample.js";

class PcmFrames extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const target = (options.processorOptions && options.processorOptions.targetRate) || 16000;
    this.frameSamples = Math.round(target / 10);
    this.resampler = new Resampler(sampleRate, target); // sampleRate: the context's, a global here
    this.pending = new Float32Array(this.frameSamples);
    this.fill = 0;
  }

  process(inputs, outputs) {
    const channels = inputs[0];
    if (outputs[0] && outputs[0][0]) outputs[0][0].fill(0); // silent: we only listen
    if (!channels || channels.length === 0) return true;
    let mono = channels[0];
    if (channels.length > 1) {
      mono = new Float32Array(mono.length);
      for (const ch of channels) for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / channels.length;
    }
    const samples = this.resampler.push(mono);
    let i = 0;
    while (i < samples.length) {
      const take = Math.min(samples.length - i, this.frameSamples - this.fill);
      this.pending.set(samples.subarray(i, i + take), this.fill);
      this.fill += take;
      i += take;
      if (this.fill === this.frameSamples) this.#post();
    }
    return true;
  }

  #post() {
    let sumSq = 0;
    for (let i = 0; i < this.fill; i++) sumSq += this.pending[i] * this.pending[i];
    const pcm = new Int16Array(this.frameSamples);
    toPcm16(this.pending, pcm);
    this.port.postMessage({ pcm: pcm.buffer, rms: Math.sqrt(sumSq / this.fill) }, [pcm.buffer]);
    this.fill = 0;
  }
}

registerProcessor("pcm-frames", PcmFrames);

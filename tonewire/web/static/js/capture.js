// The microphone through an AudioWorklet: 100 ms PCM16 frames at 16 kHz, handed to onFrame.
// The context runs at the device's own rate (often 44.1 or 48 kHz) and the worklet
// resamples, so what the server hears doesn't depend on each browser's built-in converter.

const WORKLET_URL = "/static/js/pcm-worklet.js";

export class CaptureError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

export class MicCapture {
  constructor({ onFrame, onLevel = () => {}, onEnded = () => {}, targetRate = 16000 }) {
    this.onFrame = onFrame;
    this.onLevel = onLevel;
    this.onEnded = onEnded;
    this.targetRate = targetRate;
    this.stream = null;
    this.context = null;
  }

  get sampleRate() {
    return this.context ? this.context.sampleRate : null;
  }

  async start() {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new CaptureError("INSECURE");
    }
    if (typeof AudioWorkletNode === "undefined") throw new CaptureError("NO_AUDIO_WORKLET");
    try {
      // Processing that reshapes the voice (gain control, noise suppression) would move the
      // very loudness and pitch the tone is read from: ask for the signal as it is.
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, autoGainControl: false, noiseSuppression: false, echoCancellation: false },
      });
    } catch (err) {
      throw new CaptureError(err.name || "NotAllowedError", err.message);
    }
    try {
      this.context = new AudioContext({ latencyHint: "interactive" });
      await this.context.audioWorklet.addModule(WORKLET_URL);
      const source = this.context.createMediaStreamSource(this.stream);
      const node = new AudioWorkletNode(this.context, "pcm-frames", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        processorOptions: { targetRate: this.targetRate },
      });
      node.port.onmessage = (e) => {
        this.onFrame(e.data.pcm);
        this.onLevel(e.data.rms);
      };
      // A node only runs while something pulls on it: route it to the speakers through a
      // muted gain, so nothing is heard.
      const mute = this.context.createGain();
      mute.gain.value = 0;
      source.connect(node).connect(mute).connect(this.context.destination);
      if (this.context.state === "suspended") await this.context.resume();
    } catch (err) {
      await this.stop();
      throw new CaptureError("NO_AUDIO_WORKLET", err.message);
    }
    for (const track of this.stream.getAudioTracks()) {
      track.addEventListener("ended", () => this.onEnded());
    }
  }

  async stop() {
    if (this.stream) {
      for (const track of this.stream.getTracks()) track.stop();
      this.stream = null;
    }
    if (this.context) {
      const context = this.context;
      this.context = null;
      try {
        await context.close();
      } catch {
        // already closed
      }
    }
  }
}

// The live ingest WebSocket: binary PCM16 frames, each acknowledged by the server. A socket
// that drops (network change, server restart) is reopened while the session is meant to be
// live: the server continues the session's sample clock. Close codes from the server that
// mean "stop" (session ended, unknown, another ingest) are reported instead of retried.

import { withToken } from "./auth.js";

const STOP_CODES = new Set([4000, 4004, 4009, 1009]);
const MAX_BUFFERED = 32 * 3200; // ~3 s of audio queued in the browser: past it, drop frames
const RETRY_MS = [500, 1000, 2000, 4000, 8000];

export class IngestSocket {
  constructor(sessionId, { onStop = () => {}, onState = () => {} } = {}) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.url = `${scheme}://${location.host}/session/${encodeURIComponent(sessionId)}/audio`;
    this.onStop = onStop;
    this.onState = onState;
    this.ws = null;
    this.wanted = false;
    this.retries = 0;
    this.sent = 0;
    this.dropped = 0;
    this.timer = null;
  }

  /** Resolves once connected (or rejects if the first attempt fails). */
  open() {
    this.wanted = true;
    return new Promise((resolve, reject) => this.#connect(resolve, reject));
  }

  send(buffer) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    if (ws.bufferedAmount > MAX_BUFFERED) {
      this.dropped += 1;
      return false;
    }
    ws.send(buffer);
    this.sent += 1;
    return true;
  }

  /** Flush the partial window (so the last words are analysed), then close normally. */
  close() {
    this.wanted = false;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "finalize" }));
      ws.send(JSON.stringify({ type: "close" }));
    } else if (ws) {
      ws.close();
    }
  }

  #connect(resolve, reject) {
    const ws = new WebSocket(withToken(this.url));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.retries = 0;
      this.onState("open");
      if (resolve) resolve();
    };
    ws.onclose = (e) => {
      if (this.ws !== ws && this.ws !== null) return; // replaced
      if (STOP_CODES.has(e.code)) {
        this.wanted = false;
        this.ws = null;
        this.onStop(e.code);
        if (!opened && reject) reject(Object.assign(new Error(e.reason), { code: `WS_${e.code}` }));
        return;
      }
      if (!this.wanted) return;
      if (!opened && reject) {
        this.wanted = false;
        reject(Object.assign(new Error("the audio connection failed"), { code: "NETWORK" }));
        return;
      }
      this.onState("reconnecting");
      const wait = RETRY_MS[Math.min(this.retries, RETRY_MS.length - 1)];
      this.retries += 1;
      this.timer = setTimeout(() => this.wanted && this.#connect(null, null), wait);
    };
  }
}

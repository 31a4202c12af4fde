// One followed stream over Server-Sent Events, resumable by seq.
//
// Every event carries its stream position (`id:` = seq). EventSource resends it as
// Last-Event-ID only on its own reconnects; when we close the stream ourselves (page hidden)
// and open it again, we pass `?since=` instead, which the server reads the same way. The
// header wins when both are present, so an automatic reconnect after a manual one still
// resumes from the newest seq. Events at or before the last seq are duplicates and dropped.

import { withToken } from "./auth.js";

export class ResumableStream {
  constructor(url, { types, onEvent, onState = () => {}, lastSeq = 0 }) {
    this.url = url;
    this.types = types;
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastSeq = lastSeq;
    this.source = null;
  }

  get isOpen() {
    return this.source !== null;
  }

  open() {
    this.close();
    const url = this.lastSeq > 0 ? `${this.url}?since=${this.lastSeq}` : this.url;
    const source = new EventSource(withToken(url));
    this.source = source;
    for (const type of this.types) {
      source.addEventListener(type, (e) => this.#deliver(type, e));
    }
    source.onopen = () => this.onState("open");
    source.onerror = () => {
      if (this.source !== source) return;
      // CLOSED: the server answered 204 (stream ended and fully seen) or an error status;
      // EventSource won't retry. CONNECTING: it retries by itself with Last-Event-ID.
      if (source.readyState === EventSource.CLOSED) {
        this.source = null;
        this.onState("closed");
      } else {
        this.onState("reconnecting");
      }
    };
  }

  close() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  #deliver(type, e) {
    let data;
    try {
      data = JSON.parse(e.data);
    } catch {
      return;
    }
    // A frame without an id (the current service status told to a resuming subscriber)
    // is a status, not a new event of the log.
    if (!e.lastEventId) {
      this.onEvent(type, data, { status: true });
      return;
    }
    const seq = Number(data.seq ?? e.lastEventId);
    if (seq <= this.lastSeq) return;
    this.lastSeq = seq;
    this.onEvent(type, data, { status: false });
  }
}

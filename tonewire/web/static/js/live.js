// The live view: a session's lifecycle (start, pause, resume, end), its event stream and
// what is on screen. States: idle -> starting -> live <-> paused -> ended.
//
// Hidden page: the event stream is closed (the session is not ended, and the microphone keeps
// sending so nothing said meanwhile is lost). Shown again: GET /session/{id} first, then the
// stream reopens from the last seq seen and replays what happened while hidden. If the reaper
// ended the session meanwhile (a paused or suspended page sends nothing), the replay ends with
// its session-end, and a calm notice says the session timed out.

import { Announcer } from "./announce.js";
import { getJson, postJson, request } from "./api.js";
import { withToken } from "./auth.js";
import { MicCapture } from "./capture.js";
import { byId, clock, el, percent, setText } from "./dom.js";
import { friendly, showNotice } from "./errors.js";
import { ResumableStream } from "./events.js";
import { IngestSocket } from "./ingest.js";
import { ELCOR_PREFIX, SHIFT_WORDS, toneWord } from "./labels.js";
import { ScreenWake } from "./wakelock.js";

const STREAM_TYPES = ["tone-event", "vad-event", "service-event", "transcript-event", "speaker-event", "session-end"];
const MAX_ITEMS = 300; // timeline entries kept on screen; the export has them all
const ELCOR_KEY = "tonewire.elcor";

export class LiveView {
  constructor() {
    this.state = "idle";
    this.sessionId = null;
    this.stream = null;
    this.ingest = null;
    this.capture = null;
    this.readings = [];
    this.lastLabel = null;
    this.wake = new ScreenWake();
    this.announcer = new Announcer(byId("live-announce"));
    this.elcor = localStorage.getItem(ELCOR_KEY) === "1";
    byId("live-elcor").checked = this.elcor;
    byId("live-start").addEventListener("click", () => this.start());
    byId("live-pause").addEventListener("click", () => this.pause());
    byId("live-resume").addEventListener("click", () => this.resume());
    byId("live-stop").addEventListener("click", () => this.end());
    byId("live-elcor").addEventListener("change", (e) => this.setElcor(e.target.checked));
    document.addEventListener("visibilitychange", () => this.onVisibility());
    this.render();
  }

  // -- lifecycle --------------------------------------------------------------------------

  async start() {
    if (this.state === "starting" || this.state === "live" || this.state === "paused") return;
    this.reset();
    this.setState("starting", "Starting…");
    try {
      const session = await postJson("/session/start", {});
      this.sessionId = session.session_id;
      document.body.dataset.sessionId = this.sessionId;
      this.stream = new ResumableStream(`/session/${encodeURIComponent(this.sessionId)}/stream`, {
        types: STREAM_TYPES,
        onEvent: (type, data, meta) => this.onEvent(type, data, meta),
        onState: (s) => this.onStreamState(s),
      });
      this.stream.open();
      await this.listen();
      this.setExports();
    } catch (err) {
      await this.abandon(err);
    }
  }

  async listen() {
    this.ingest = new IngestSocket(this.sessionId, { onStop: (code) => this.onIngestStop(code) });
    await this.ingest.open();
    this.capture = new MicCapture({
      onFrame: (pcm) => this.ingest && this.ingest.send(pcm),
      onLevel: (rms) => this.showLevel(rms),
      onEnded: () => this.pause("The microphone stopped. Resume when it is available again."),
    });
    await this.capture.start();
    await this.wake.hold();
    this.setState("live", "Listening.");
  }

  async pause(message = "Paused. Nothing is being sent.") {
    if (this.state !== "live") return;
    await this.stopListening();
    this.setState("paused", message);
  }

  async resume() {
    if (this.state !== "paused") return;
    this.setState("starting", "Starting…");
    try {
      if (!(await this.checkAlive())) return;
      if (!this.stream.isOpen) this.stream.open();
      await this.listen();
    } catch (err) {
      await this.stopListening();
      this.setState("paused", "Paused.");
      showNotice(byId("live-notice"), friendly(err));
    }
  }

  async end() {
    if (!this.sessionId || this.state === "ended") return;
    await this.stopListening();
    this.setState("ending", "Ending…");
    try {
      await request("DELETE", `/session/${encodeURIComponent(this.sessionId)}/end`);
    } catch (err) {
      if (err.code !== "SESSION_NOT_FOUND") showNotice(byId("live-notice"), friendly(err));
    }
    // The stream delivers session-end (and closes); if it isn't open, finish here.
    if (!this.stream || !this.stream.isOpen) this.finish({ reason: "ended" });
  }

  async stopListening() {
    const capture = this.capture;
    this.capture = null;
    if (capture) await capture.stop();
    if (this.ingest) this.ingest.close();
    this.ingest = null;
    await this.wake.release();
    this.showLevel(0);
    this.showSpeech(false);
  }

  async abandon(err) {
    await this.stopListening();
    if (this.stream) this.stream.close();
    if (this.sessionId) {
      try {
        await request("DELETE", `/session/${encodeURIComponent(this.sessionId)}/end`);
      } catch {
        // best effort: the reaper ends it anyway
      }
    }
    this.setState("idle", "Not listening.");
    showNotice(byId("live-notice"), friendly(err));
  }

  /** The session is over (ended, or reaped while nobody watched). */
  finish({ reason }) {
    if (this.state === "ended") return;
    this.stopListening();
    if (this.stream) this.stream.close();
    if (reason === "idle") {
      this.setState("ended", "Session ended.");
      showNotice(byId("live-notice"), {
        text: "Session timed out. It ended while this page was away. The readings so far are kept below; start again whenever you like.",
      }, { tone: "calm" });
      this.announcer.say("Session timed out.");
    } else {
      this.setState("ended", "Session ended. The readings are kept below.");
    }
  }

  /** Whether the session is still active; finishes the view when it is not. */
  async checkAlive() {
    const session = await this.fetchSession();
    if (!session) return false;
    if (session.state === "ended") {
      this.finish({ reason: session.end_reason || "ended" });
      return false;
    }
    return true;
  }

  async onVisibility() {
    if (!this.sessionId || this.state === "ended" || this.state === "idle") return;
    if (document.visibilityState === "hidden") {
      // The browser releases the wake lock by itself; we close the stream (not the session).
      this.stream.close();
      document.body.dataset.stream = "closed";
      return;
    }
    try {
      const session = await this.fetchSession();
      if (!session) return;
      // Reopen from the last seq seen: it replays what happened while hidden. If the reaper
      // ended the session meanwhile, the replay ends with its session-end, which says so.
      this.stream.open();
      if (session.state === "active" && this.state === "live") await this.wake.hold();
    } catch (err) {
      showNotice(byId("live-notice"), friendly(err));
      this.stream.open(); // a network blip: let EventSource keep trying
    }
  }

  /** GET /session/{id}; null (and finished) when the server no longer knows it. */
  async fetchSession() {
    try {
      return await getJson(`/session/${encodeURIComponent(this.sessionId)}`);
    } catch (err) {
      if (err.code !== "SESSION_NOT_FOUND") throw err;
      this.finish({ reason: "idle" });
      return null;
    }
  }

  onIngestStop(code) {
    if (code === 4000 || code === 4004) {
      this.checkAlive().catch(() => {});
      return;
    }
    this.stopListening().then(() => {
      this.setState("paused", "Paused.");
      showNotice(byId("live-notice"), friendly({ code: `WS_${code}` }));
    });
  }

  onStreamState(s) {
    document.body.dataset.stream = s;
    if (s === "reconnecting" && this.state === "live") setText("live-status", "Reconnecting…");
    if (s === "open" && this.state === "live") setText("live-status", "Listening.");
    if (s === "closed" && this.sessionId && this.state !== "ended") {
      // 204 (ended and fully seen) or an error status: ask what happened. Still active (a
      // proxy dropped us, say): try again shortly, from the last seq.
      this.checkAlive()
        .then((alive) => alive && setTimeout(() => this.state !== "ended" && this.stream.open(), 2000))
        .catch(() => setTimeout(() => this.state !== "ended" && this.stream.open(), 2000));
    }
  }

  // -- events -----------------------------------------------------------------------------

  onEvent(type, data, { status }) {
    if (type === "tone-event") this.addReading(data);
    else if (type === "vad-event") this.showSpeech(Boolean(data.speech));
    else if (type === "service-event") this.showService(data);
    else if (type === "session-end") this.finish({ reason: data.reason });
    if (!status) document.body.dataset.lastSeq = String(this.stream.lastSeq);
  }

  addReading(tone) {
    this.readings.push(tone);
    const list = byId("live-timeline");
    list.prepend(this.item(tone));
    while (list.children.length > MAX_ITEMS) list.lastElementChild.remove();
    byId("live-empty").hidden = true;
    const n = this.readings.length;
    setText("live-count", `${n} reading${n === 1 ? "" : "s"}`);
    this.showNow(tone);
    this.showPitch(tone.features && tone.features.f0_mean_hz);
    const previous = this.lastLabel;
    this.lastLabel = tone.label;
    if (tone.label !== previous || (tone.shift_direction !== "stable" && this.lastShift !== tone.shift_direction)) {
      const shift = tone.shift_direction !== "stable" ? `, ${tone.shift_direction}` : "";
      this.announcer.say(`Tone: ${toneWord(tone.label)}${shift}, ${percent(tone.confidence)} estimated.`);
    }
    this.lastShift = tone.shift_direction;
  }

  subtext(tone) {
    return this.elcor ? ELCOR_PREFIX[tone.label] || tone.subtext : tone.subtext;
  }

  item(tone) {
    const shift = tone.shift_direction && tone.shift_direction !== "stable";
    return el("li", { class: "reading", dataset: { seq: tone.seq, affect: tone.affect || "neutral" } },
      el("span", { class: "when" }, clock(tone.timestamp)),
      el("span", { class: "chip" }, toneWord(tone.label)),
      el("span", { class: "conf", title: "confidence" }, percent(tone.confidence)),
      el("span", { class: "sub" }, this.subtext(tone)),
      shift ? el("span", { class: `shift ${tone.shift_direction}` },
        tone.shift_direction === "rising" ? "↑ rising" : "↓ falling") : null);
  }

  showNow(tone) {
    const card = byId("live-now");
    card.dataset.affect = tone.affect || "neutral";
    setText("live-label", toneWord(tone.label));
    setText("live-confidence", `Confidence ${percent(tone.confidence)}`);
    setText("live-subtext", this.subtext(tone));
    setText("live-shift", SHIFT_WORDS[tone.shift_direction] || "");
  }

  showSpeech(speech) {
    byId("live-speech").dataset.speech = String(speech);
    setText("live-speech-text", speech ? "Speech" : "No speech");
  }

  showService(data) {
    if (data.status === "warning" || data.status === "error") {
      setText("live-status", `Listening. Note: ${data.message}`);
    }
  }

  showLevel(rms) {
    const db = rms > 0 ? Math.max(-70, 20 * Math.log10(rms * Math.SQRT2)) : -70;
    byId("live-level").value = db;
    setText("live-level-text", rms > 0 ? `${Math.round(db)} dB` : "—");
  }

  showPitch(hz) {
    if (!hz) return;
    // 60-500 Hz on a log scale: the range the pitch tracker reads.
    byId("live-pitch").value = Math.log(hz / 60) / Math.log(500 / 60);
    setText("live-pitch-text", `${Math.round(hz)} Hz`);
  }

  setElcor(on) {
    this.elcor = on;
    localStorage.setItem(ELCOR_KEY, on ? "1" : "0");
    const bySeq = new Map(this.readings.map((t) => [String(t.seq), t]));
    for (const li of byId("live-timeline").children) {
      const tone = bySeq.get(li.dataset.seq);
      if (tone) li.querySelector(".sub").textContent = this.subtext(tone);
    }
    const last = this.readings[this.readings.length - 1];
    if (last) setText("live-subtext", this.subtext(last));
  }

  // -- chrome -------------------------------------------------------------------------------

  reset() {
    this.readings = [];
    this.lastLabel = null;
    this.lastShift = null;
    this.sessionId = null;
    byId("live-timeline").replaceChildren();
    byId("live-empty").hidden = false;
    byId("live-exports").hidden = true;
    setText("live-count", "0 readings");
    setText("live-label", "—");
    setText("live-confidence", "");
    setText("live-subtext", "Waiting for speech.");
    setText("live-shift", "");
    byId("live-now").dataset.affect = "none";
    byId("live-pitch").value = 0;
    setText("live-pitch-text", "—");
    this.showSpeech(false);
    showNotice(byId("live-notice"), null);
  }

  setExports() {
    const base = `/session/${encodeURIComponent(this.sessionId)}/export`;
    byId("live-export-json").href = withToken(`${base}?format=json`);
    byId("live-export-csv").href = withToken(`${base}?format=csv`);
    byId("live-exports").hidden = false;
  }

  setState(state, message) {
    this.state = state;
    document.body.dataset.liveState = state;
    setText("live-status", message);
    this.render();
  }

  render() {
    const s = this.state;
    byId("live-start").hidden = !(s === "idle" || s === "ended");
    byId("live-start").textContent = s === "ended" ? "Start a new session" : "Start listening";
    byId("live-start").disabled = false;
    byId("live-pause").hidden = s !== "live";
    byId("live-resume").hidden = s !== "paused";
    byId("live-stop").hidden = !(s === "live" || s === "paused");
    const busy = s === "starting" || s === "ending";
    if (busy) {
      byId("live-start").hidden = false;
      byId("live-start").disabled = true;
    }
  }
}

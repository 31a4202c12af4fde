// The analyze view: send a file (or a link), follow the job's events, and show one segment
// at a time across every visualisation. One slider picks the segment; while the analysis
// runs the slider follows the newest segment unless the user has moved it back.

import { Announcer } from "./announce.js";
import { getJson, request, upload } from "./api.js";
import { BrainMap } from "./brain.js";
import { Bars, TimeChart } from "./charts.js";
import { byId, clock, el, percent, setText, setVar } from "./dom.js";
import { friendly, showNotice } from "./errors.js";
import { ResumableStream } from "./events.js";
import { emotionText } from "./labels.js";

const BANDS = [
  { key: "bass", label: "Bass", hint: "20–250 Hz" },
  { key: "lowMid", label: "Low mid", hint: "250–500 Hz" },
  { key: "mid", label: "Mid", hint: "500–2000 Hz" },
  { key: "highMid", label: "High mid", hint: "2–4 kHz" },
  { key: "high", label: "High", hint: "4–20 kHz" },
];
const WAVES = [
  { key: "delta", label: "Delta", hint: "0.5–4 Hz modulation" },
  { key: "theta", label: "Theta", hint: "4–8 Hz modulation" },
  { key: "alpha", label: "Alpha", hint: "8–13 Hz modulation" },
  { key: "beta", label: "Beta", hint: "13–30 Hz modulation" },
  { key: "gamma", label: "Gamma", hint: "30–100 Hz modulation" },
];
const CHART_EVERY_MS = 200; // the chart redraws every point: at most this often while running

const STATUS_WORDS = {
  pending: "Waiting for a worker…",
  decoding: "Reading the audio…",
  analyzing: "Analysing…",
  complete: "Done.",
};

export class AnalyzeView {
  constructor() {
    this.jobId = null;
    this.stream = null;
    this.segments = [];
    this.analysis = null;
    this.following = true;
    this.announcer = new Announcer(byId("an-announce"));
    this.bands = new Bars(byId("an-bands"), BANDS);
    this.waves = new Bars(byId("an-waves"), WAVES);
    this.brain = new BrainMap(byId("an-brain"), byId("an-brain-info"));
    this.chart = new TimeChart(byId("an-chart"));
    byId("an-upload").addEventListener("submit", (e) => {
      e.preventDefault();
      this.submitFile();
    });
    byId("an-url-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.submitUrl();
    });
    byId("an-cancel").addEventListener("click", () => this.cancel());
    const slider = byId("an-slider");
    slider.addEventListener("input", () => {
      this.following = Number(slider.value) >= this.segments.length - 1;
      this.show(Number(slider.value));
    });
  }

  // -- sources ----------------------------------------------------------------------------

  async submitFile() {
    const input = byId("an-file");
    const file = input.files && input.files[0];
    if (!file) {
      showNotice(byId("an-notice"), friendly({ code: "MISSING_FILE" }));
      input.focus();
      return;
    }
    const form = new FormData();
    form.append("file", file, file.name);
    const bar = byId("an-progress");
    const sending = (fraction) => {
      bar.value = Math.round(fraction * 100);
      setText("an-message", `Sending the file… ${Math.round(fraction * 100)}%`);
    };
    await this.submit(() => upload("/api/jobs", form, sending), file.name, "file");
  }

  async submitUrl() {
    const input = byId("an-url");
    const url = input.value.trim();
    if (!url || !input.checkValidity()) {
      showNotice(byId("an-notice"), { text: "Paste a full link, starting with https://" });
      input.focus();
      return;
    }
    await this.submit(() => request("POST", "/api/jobs", { json: { url } }), url, "url");
  }

  async submit(send, title, about) {
    showNotice(byId("an-notice"), null);
    this.busy(true, `Sending ${about === "file" ? "the file" : "the link"}…`, title);
    try {
      const job = await send();
      this.follow(job.job_id, title);
    } catch (err) {
      this.busy(false);
      showNotice(byId("an-notice"), friendly(err, { about }));
      this.announcer.say(friendly(err, { about }).text);
    }
  }

  busy(on, message = "", title = "") {
    for (const form of [byId("an-upload"), byId("an-url-form")]) {
      for (const control of form.elements) control.disabled = on;
    }
    if (on) {
      byId("an-progress-box").hidden = false;
      byId("an-progress").removeAttribute("value"); // indeterminate until the job reports
      setText("an-message", message);
      setText("an-title", title);
    } else if (!this.jobId) {
      byId("an-progress-box").hidden = true;
    }
  }

  // -- following a job ---------------------------------------------------------------------

  follow(jobId, title = "") {
    this.close();
    this.jobId = jobId;
    this.segments = [];
    this.analysis = null;
    this.following = true;
    document.body.dataset.jobId = jobId;
    document.body.dataset.jobState = "running";
    if (location.hash !== `#analyze/${jobId}`) history.replaceState(null, "", `#analyze/${jobId}`);
    byId("an-progress-box").hidden = false;
    byId("an-cancel").hidden = false;
    setText("an-title", title);
    byId("an-results").hidden = true;
    byId("an-sections").replaceChildren();
    this.chart.markSections([]);
    setText("an-overall", "—");
    setText("an-track", "Known when the analysis is done");
    this.stream = new ResumableStream(`/api/jobs/${encodeURIComponent(jobId)}/events`, {
      types: ["progress", "chunk", "complete", "error"],
      onEvent: (type, data) => this.onEvent(type, data),
      onState: (s) => s === "closed" && this.onClosed(),
    });
    this.stream.open();
    if (!title) {
      getJson(`/api/jobs/${encodeURIComponent(jobId)}`)
        .then((job) => setText("an-title", job.title || ""))
        .catch(() => {});
    }
  }

  close() {
    if (this.stream) this.stream.close();
    this.stream = null;
  }

  async cancel() {
    if (!this.jobId) return;
    try {
      await request("DELETE", `/api/jobs/${encodeURIComponent(this.jobId)}`);
    } catch (err) {
      showNotice(byId("an-notice"), friendly(err));
    }
  }

  onEvent(type, data) {
    if (type === "progress") this.onProgress(data);
    else if (type === "chunk") this.onChunk(data.segment);
    else if (type === "complete") this.onComplete(data.analysis);
    else if (type === "error") this.onError(data);
  }

  onProgress(p) {
    const bar = byId("an-progress");
    bar.value = p.progress;
    const words = STATUS_WORDS[p.status] || "";
    // The server's own words when they add something ("analysed 12 s of audio",
    // "downloading: 3 of 5 MB"), not when they repeat the status.
    const plain = ["", "waiting for a worker", "decoding audio", "complete"];
    const detail = p.message && !plain.includes(p.message) ? ` ${capitalised(p.message)}.` : "";
    setText("an-message", `${words}${detail} ${p.progress}%`);
  }

  onChunk(segment) {
    if (segment.index !== undefined && segment.index < this.segments.length) return;
    this.segments.push(segment);
    this.refresh();
  }

  onComplete(analysis) {
    this.analysis = analysis;
    this.segments = analysis.segments;
    this.close();
    document.body.dataset.jobState = "complete";
    byId("an-progress").value = 100;
    setText("an-message", `Done: ${clock(analysis.duration)} analysed.`);
    if (analysis.video && analysis.video.title) setText("an-title", analysis.video.title);
    byId("an-cancel").hidden = true;
    this.busy(false);
    this.refresh();
    this.showTrack(analysis);
    this.announcer.say(`Analysis complete. ${this.trackSummary(analysis)}`);
  }

  onError(data) {
    this.close();
    document.body.dataset.jobState = "error";
    byId("an-cancel").hidden = true;
    byId("an-progress-box").hidden = true;
    const notice = friendly({ code: data.code, message: data.message });
    showNotice(byId("an-notice"), notice);
    this.jobId = null;
    this.busy(false);
    this.announcer.say(notice.text);
  }

  async onClosed() {
    // The stream ended without complete/error reaching us (204 on resume, or a failure):
    // ask the job directly.
    if (!this.jobId || this.analysis) return;
    const id = this.jobId;
    try {
      const job = await getJson(`/api/jobs/${encodeURIComponent(id)}`);
      if (job.status === "complete") {
        this.onComplete(await getJson(`/api/jobs/${encodeURIComponent(id)}/analysis`));
      } else if (job.error) {
        this.onError(job.error);
      } else {
        setTimeout(() => this.jobId === id && this.stream && this.stream.open(), 2000);
      }
    } catch (err) {
      this.onError({ code: err.code, message: err.message });
    }
  }

  // -- drawing ----------------------------------------------------------------------------

  duration() {
    if (this.analysis) return this.analysis.duration;
    const last = this.segments[this.segments.length - 1];
    return last ? last.endTime : 0;
  }

  refresh() {
    if (!this.segments.length) return;
    byId("an-results").hidden = false;
    const slider = byId("an-slider");
    slider.max = String(this.segments.length - 1);
    this.drawChart();
    const index = this.following ? this.segments.length - 1 : Math.min(Number(slider.value), this.segments.length - 1);
    slider.value = String(index);
    this.show(index);
  }

  // A long file sends hundreds of chunks a second; redrawing the whole chart for each would
  // cost O(n^2). The other views are O(1) per chunk and follow every one.
  drawChart() {
    clearTimeout(this.chartTimer);
    const wait = (this.chartAt || 0) + CHART_EVERY_MS - performance.now();
    if (this.analysis || wait <= 0) {
      this.chartAt = performance.now();
      this.chart.draw(this.segments, this.duration());
      return;
    }
    this.chartTimer = setTimeout(() => this.drawChart(), wait);
  }

  show(index) {
    const seg = this.segments[index];
    if (!seg) return;
    const slider = byId("an-slider");
    const timeText = `${clock(seg.startTime)} of ${clock(this.duration())}`;
    setText("an-time", timeText);
    slider.setAttribute("aria-valuetext", timeText);
    showPair("an-emotion", emotionText(seg.emotion));
    this.bands.update(seg.frequencies, Object.fromEntries(BANDS.map(({ key }) => [
      key, seg.frequenciesDb ? `${Math.round(seg.frequenciesDb[key])} dB` : percent(seg.frequencies[key])])));
    this.waves.update(seg.brainwaves, Object.fromEntries(WAVES.map(({ key }) => [key, percent(seg.brainwaves[key])])));
    this.brain.update(seg.brainRegions);
    this.chart.moveCursor(seg);
    const tempo = seg.rhythm && seg.rhythm.tempo;
    setText("an-tempo", tempo ? `${Math.round(tempo)} BPM` : "No steady beat");
    const section = this.sectionAt(seg.startTime);
    if (section) {
      const n = this.analysis.sections.indexOf(section) + 1;
      setText("an-section-name", `Section ${n} of ${this.analysis.sections.length}`);
      showPair("an-key", section.key
        ? { word: section.key.name, conf: `confidence ${percent(section.key.confidence)}` }
        : { word: "Unclear", conf: "" });
    } else {
      setText("an-section-name", this.analysis ? "" : "Analysing…");
      setText("an-key", this.analysis ? "Unclear" : "Known when the analysis is done");
    }
    document.body.dataset.segment = String(index);
  }

  sectionAt(t) {
    const sections = this.analysis && this.analysis.sections;
    if (!sections) return null;
    return sections.find((s) => t >= s.startTime && t < s.endTime) || sections[sections.length - 1] || null;
  }

  showTrack(analysis) {
    showPair("an-overall", emotionText(analysis.overallEmotion));
    setText("an-track", this.trackSummary(analysis));
    const marks = byId("an-sections");
    marks.replaceChildren();
    const duration = Math.max(analysis.duration, 1e-6);
    for (const [i, section] of (analysis.sections || []).entries()) {
      const mark = el("span", { class: "mark", title: `Section ${i + 1} at ${clock(section.startTime)}` });
      setVar(mark, "--at", (section.startTime / duration).toFixed(4));
      marks.append(mark);
    }
    this.chart.markSections(analysis.sections || []);
  }

  trackSummary(analysis) {
    const parts = [];
    if (analysis.tempo && analysis.tempo.bpm) parts.push(`${Math.round(analysis.tempo.bpm)} BPM`);
    if (analysis.key && analysis.key.name) parts.push(analysis.key.name);
    if (analysis.loudness && analysis.loudness.integratedLufs !== null && analysis.loudness.integratedLufs !== undefined) {
      parts.push(`${Math.round(analysis.loudness.integratedLufs)} LUFS`);
    }
    return parts.join(" · ") || "No steady beat or key";
  }
}

/** A value with its confidence underneath, smaller. */
function showPair(id, { word, conf }) {
  byId(id).replaceChildren(word, ...(conf ? [" ", el("span", { class: "sub" }, conf)] : []));
}

function capitalised(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

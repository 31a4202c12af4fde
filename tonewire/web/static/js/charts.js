// Bars and a time chart, drawn with DOM and inline SVG. Values reach the stylesheet as CSS
// custom properties set through the CSSOM (CSP-safe); SVG shapes use plain attributes.

import { clock, el, setVar, svg } from "./dom.js";

/** A labelled list of horizontal bars, 0..1 each. */
export class Bars {
  /** @param items [{key, label, hint}] */
  constructor(list, items) {
    this.rows = new Map();
    list.replaceChildren();
    for (const item of items) {
      const value = el("span", { class: "bar-value" }, "—");
      const fill = el("span", { class: "bar-fill" });
      const row = el("li", { class: "bar", dataset: { key: item.key }, title: item.hint || null },
        el("span", { class: "bar-label" }, item.label),
        el("span", { class: "bar-track", "aria-hidden": "true" }, fill),
        value);
      list.append(row);
      this.rows.set(item.key, { row, fill, value });
    }
  }

  /** values: {key: 0..1}; text: {key: string} */
  update(values, text) {
    for (const [key, { row, fill, value }] of this.rows) {
      const v = Math.max(0, Math.min(1, Number(values[key]) || 0));
      setVar(fill, "--v", v.toFixed(4));
      value.textContent = text[key];
      row.dataset.value = v.toFixed(4);
    }
  }
}

// Drawn in a fixed 1000 x 200 box stretched to the card (preserveAspectRatio none, strokes
// kept at their width by non-scaling-stroke); the time labels are HTML, so text never
// stretches or shrinks with the chart.
const W = 1000;
const H = 200;
const PAD = { left: 4, right: 4, top: 8, bottom: 8 };
const LUFS_MIN = -60;
const LUFS_MAX = 0;

/** Loudness (short-term LUFS) and energy (RMS) over the whole track, a cursor, sections. */
export class TimeChart {
  constructor(host) {
    this.svg = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "timechart", role: "img",
      preserveAspectRatio: "none", "aria-label": "Loudness and energy over time" });
    this.grid = svg("g", { class: "grid" });
    this.sections = svg("g", { class: "sections" });
    this.loud = svg("polyline", { class: "line loud", points: "" });
    this.energy = svg("polyline", { class: "line energy", points: "" });
    this.cursor = svg("line", { class: "cursor", x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom });
    this.endLabel = el("span", {}, "");
    for (const db of [-48, -24, 0]) {
      const y = this.#yLufs(db);
      this.grid.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }));
    }
    this.svg.append(this.grid, this.sections, this.energy, this.loud, this.cursor);
    const axis = el("div", { class: "axis", "aria-hidden": "true" }, el("span", {}, "0:00"), this.endLabel);
    host.replaceChildren(this.svg, axis);
    this.duration = 1;
    this.points = 0;
  }

  #x(t) {
    return PAD.left + (t / this.duration) * (W - PAD.left - PAD.right);
  }

  #yLufs(lufs) {
    const v = (Math.max(LUFS_MIN, Math.min(LUFS_MAX, lufs)) - LUFS_MIN) / (LUFS_MAX - LUFS_MIN);
    return H - PAD.bottom - v * (H - PAD.top - PAD.bottom);
  }

  /** Redraw both lines for these segments; duration is the track's (or what is known). */
  draw(segments, duration) {
    this.duration = Math.max(duration, 1e-6);
    const maxEnergy = Math.max(1e-9, ...segments.map((s) => s.energy || 0));
    const mid = (s) => (s.startTime + s.endTime) / 2;
    const loud = segments.map((s) => {
      const l = s.loudness ? s.loudness.shortTermLufs : LUFS_MIN;
      return `${this.#x(mid(s)).toFixed(1)},${this.#yLufs(l).toFixed(1)}`;
    });
    const energy = segments.map((s) => {
      const v = (s.energy || 0) / maxEnergy;
      const y = H - PAD.bottom - v * (H - PAD.top - PAD.bottom);
      return `${this.#x(mid(s)).toFixed(1)},${y.toFixed(1)}`;
    });
    this.loud.setAttribute("points", loud.join(" "));
    this.energy.setAttribute("points", energy.join(" "));
    this.endLabel.textContent = clock(duration);
    this.points = segments.length;
    this.svg.dataset.points = String(segments.length);
  }

  markSections(sections) {
    this.sections.replaceChildren();
    for (const section of sections.slice(1)) {
      const x = this.#x(section.startTime);
      this.sections.append(svg("line", { x1: x, x2: x, y1: PAD.top, y2: H - PAD.bottom }));
    }
  }

  moveCursor(segment) {
    const x = this.#x((segment.startTime + segment.endTime) / 2).toFixed(1);
    this.cursor.setAttribute("x1", x);
    this.cursor.setAttribute("x2", x);
    this.svg.dataset.cursor = x;
  }
}

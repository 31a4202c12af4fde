// A 2D brain diagram (left side view, face to the left) with the seven regions of the
// analysis's brainRegions. Each region's fill follows its activation; its name and what it
// stands for here appear on hover, tap or keyboard focus. The regions are heuristics
// computed from the music (docs/analysis.md), and the text says so.

import { svg } from "./dom.js";

export const REGIONS = [
  { key: "prefrontalCortex", name: "Prefrontal cortex", does: "planning and attention",
    here: "harmonic complexity and noisiness", shape: ["path", { d: "M74 128 C66 86 92 46 146 34 L160 112 C140 140 112 160 84 160 C78 150 75 140 74 128 Z" }] },
  { key: "motorCortex", name: "Motor cortex", does: "movement",
    here: "a clear pulse near 115 BPM, a tempo that invites moving", shape: ["path", { d: "M190 24 C204 20 222 20 236 24 L214 104 L196 104 Z" }] },
  { key: "auditoryCortex", name: "Auditory cortex", does: "hearing",
    here: "how loud the music is", shape: ["path", { d: "M180 150 C214 136 270 136 304 152 C300 170 270 180 236 180 C206 180 186 170 180 150 Z" }] },
  { key: "basalGanglia", name: "Basal ganglia", does: "timing and habits",
    here: "how clear the beat is", deep: true, shape: ["ellipse", { cx: 232, cy: 118, rx: 22, ry: 14 }] },
  { key: "nucleusAccumbens", name: "Nucleus accumbens", does: "reward and pleasure",
    here: "positive harmony with a clear pulse", deep: true, shape: ["circle", { cx: 196, cy: 126, r: 10 }] },
  { key: "amygdala", name: "Amygdala", does: "alarm and emotional salience",
    here: "tension, dark harmony and sudden loud rises", deep: true, shape: ["circle", { cx: 206, cy: 194, r: 10 }] },
  { key: "hippocampus", name: "Hippocampus", does: "memory",
    here: "how much this moment repeats earlier music", deep: true,
    shape: ["path", { d: "M222 196 C240 204 262 202 280 190 L284 198 C264 212 240 214 220 204 Z" }] },
];

const OUTLINE = "M60 120 C52 70 96 28 160 22 C230 14 300 30 338 76 C362 104 362 146 340 172 "
  + "C330 186 318 194 300 196 C306 214 296 234 272 236 C248 238 232 226 226 212 "
  + "C196 218 160 214 132 204 C96 192 66 164 60 120 Z";
const CEREBELLUM = "M284 200 C300 198 326 190 338 176 C350 196 340 226 310 230 C292 232 280 220 284 200 Z";

export class BrainMap {
  constructor(host, info) {
    this.info = info;
    this.values = {};
    this.nodes = new Map();
    const root = svg("svg", { viewBox: "20 0 360 250", class: "brainmap", role: "group",
      "aria-label": "Brain map: seven regions, each shaded by its heuristic activation" });
    root.append(svg("path", { d: OUTLINE, class: "outline" }), svg("path", { d: CEREBELLUM, class: "outline cerebellum" }));
    for (const region of REGIONS) {
      const [tag, attrs] = region.shape;
      const shape = svg(tag, { ...attrs, class: "shape", "fill-opacity": "0.08" });
      const title = svg("title", {}, region.name);
      const g = svg("g", { class: `region${region.deep ? " deep" : ""}`, tabindex: "0", role: "button",
        "aria-label": region.name, dataset: { region: region.key } }, title, shape);
      const show = () => this.show(region.key);
      g.addEventListener("mouseenter", show);
      g.addEventListener("focus", show);
      g.addEventListener("click", show);
      g.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          show();
        }
      });
      root.append(g);
      this.nodes.set(region.key, { g, shape, title, region });
    }
    host.replaceChildren(root);
    this.selected = null;
  }

  update(values) {
    this.values = values || {};
    for (const [key, { g, shape, title, region }] of this.nodes) {
      const v = Math.max(0, Math.min(1, Number(this.values[key]) || 0));
      // 0.08 keeps a silent region visible as an outline; full activation is nearly solid.
      shape.setAttribute("fill-opacity", (0.08 + 0.84 * v).toFixed(3));
      g.dataset.value = v.toFixed(4);
      const label = `${region.name}: ${Math.round(v * 100)}%`;
      g.setAttribute("aria-label", label);
      title.textContent = label;
    }
    if (this.selected) this.show(this.selected);
  }

  show(key) {
    const { region } = this.nodes.get(key);
    this.selected = key;
    for (const [k, { g }] of this.nodes) g.classList.toggle("selected", k === key);
    const v = Math.round((Number(this.values[key]) || 0) * 100);
    this.info.textContent = `${region.name} (${region.does}) — ${v}%. Here it stands for ${region.here}. A heuristic, not a brain measurement.`;
  }
}

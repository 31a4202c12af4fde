// A 2D brain diagram (left side view, face to the left) with the seven regions of the
// analysis's brainRegions. Each region's fill follows its activation; its name and what it
// stands for here appear on hover, tap or keyboard focus. The regions are heuristics
// computed from the music (docs/analysis.md), and the text says so.

import { svg } from "./dom.js";

export const REGIONS = [
  { key: "prefrontalCortex", name: "Prefrontal cortex", does: "planning and attention",
    here: "harmonic complexity and noisiness",
    shape: ["path", { d: "M58 146 C50 100 84 52 146 38 C156 74 158 112 150 146 C120 156 88 158 58 146 Z" }] },
  { key: "motorCortex", name: "Motor cortex", does: "movement",
    here: "a clear pulse near 115 BPM, a tempo that invites moving",
    shape: ["path", { d: "M170 31 C182 28 194 28 204 30 C198 70 192 108 188 146 L168 148 C172 108 174 70 170 31 Z" }] },
  { key: "auditoryCortex", name: "Auditory cortex", does: "hearing",
    here: "how loud the music is",
    shape: ["path", { d: "M138 176 C182 166 232 158 274 158 C278 170 272 180 260 184 C218 188 178 194 142 196 C134 190 134 182 138 176 Z" }] },
  { key: "basalGanglia", name: "Basal ganglia", does: "timing and habits",
    here: "how clear the beat is", deep: true, shape: ["ellipse", { cx: 214, cy: 118, rx: 22, ry: 14 }] },
  { key: "nucleusAccumbens", name: "Nucleus accumbens", does: "reward and pleasure",
    here: "positive harmony with a clear pulse", deep: true, shape: ["circle", { cx: 164, cy: 158, r: 9 }] },
  { key: "amygdala", name: "Amygdala", does: "alarm and emotional salience",
    here: "tension, dark harmony and sudden loud rises", deep: true,
    shape: ["circle", { cx: 178, cy: 206, r: 9 }] },
  { key: "hippocampus", name: "Hippocampus", does: "memory",
    here: "how much this moment repeats earlier music", deep: true,
    shape: ["path", { d: "M192 206 C212 214 238 212 258 200 L262 208 C240 222 212 224 190 214 Z" }] },
];

// Left side view, face to the left: cerebrum, cerebellum and brainstem, with the lateral
// and central sulci drawn as thin lines for orientation.
const CEREBRUM = "M52 150 C40 92 90 36 170 28 C250 20 330 50 352 112 C366 150 350 186 318 196 "
  + "C300 202 282 200 268 196 C250 222 200 232 160 218 C130 208 116 196 100 192 C70 186 56 172 52 150 Z";
const CEREBELLUM = "M268 196 C290 200 312 198 326 190 C342 206 334 236 302 240 C278 242 262 226 268 196 Z";
const BRAINSTEM = "M234 212 C240 232 242 250 244 268 L262 268 C262 248 262 230 258 210 Z";
const SULCI = ["M118 170 C170 160 222 152 268 150", "M204 30 C198 70 192 108 188 146"];

export class BrainMap {
  constructor(host, info) {
    this.info = info;
    this.values = {};
    this.nodes = new Map();
    const root = svg("svg", { viewBox: "30 14 340 262", class: "brainmap", role: "group",
      "aria-label": "Brain map: seven regions, each shaded by its heuristic activation" });
    root.append(
      svg("path", { d: BRAINSTEM, class: "outline stem" }),
      svg("path", { d: CEREBELLUM, class: "outline cerebellum" }),
      svg("path", { d: CEREBRUM, class: "outline" }),
      ...SULCI.map((d) => svg("path", { d, class: "sulcus" })));
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

// Small DOM helpers shared by every view. Elements are built with createElement and text
// nodes (never innerHTML), so server strings can't inject markup and no CSP exception is needed.

const SVG_NS = "http://www.w3.org/2000/svg";

export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`missing #${id}`);
  return node;
}

/** el("li", {class: "x", dataset: {seq: 3}}, "text", child) */
export function el(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function setText(id, text) {
  byId(id).textContent = text;
}

/** 75 -> "1:15", 3725 -> "1:02:05" */
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

export function percent(x) {
  return `${Math.round(Math.max(0, Math.min(1, x)) * 100)}%`;
}

export function capitalise(word) {
  return word ? word[0].toUpperCase() + word.slice(1) : word;
}

// A CSS custom property set through the CSSOM: allowed under a strict style-src, unlike a
// style attribute. The stylesheet turns it into widths and colours.
export function setVar(node, name, value) {
  node.style.setProperty(name, String(value));
}

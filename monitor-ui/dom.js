// Small DOM and formatting helpers shared by the panes. Everything the page shows from the
// API goes through `h` as text nodes, never as HTML, so names and posts cannot inject markup.

/**
 * Builds an element: `h("a", {href: "#/", class: "x", dataset: {entity: 3}}, "text", child)`.
 * Attributes whose value is null, undefined or false are left out; `on*` functions become
 * listeners.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "dataset") {
      for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
    } else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces every child of `el`. */
export function setChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** Sets `el.textContent` only when it changes (keeps the DOM quiet on frequent renders). */
export function setText(el, text) {
  const s = String(text);
  if (el.textContent !== s) el.textContent = s;
}

/** "just now", "12 s ago", "5 min ago", "3 h ago", "4 d ago", or a date. */
export function ago(ms, now = Date.now()) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 3) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const hr = Math.round(m / 60);
  if (hr < 48) return `${hr} h ago`;
  const d = Math.round(hr / 24);
  if (d < 30) return `${d} d ago`;
  return new Date(ms).toLocaleDateString();
}

/** A full local date and time, for tooltips. */
export function fullTime(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

/** 1234 → "1,234"; 1234567 → "1.2 M". */
export function count(n) {
  n = Number(n) || 0;
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)} M`;
  return n.toLocaleString("en-US");
}

/** A per-second rate with sensible precision. */
export function rate(n) {
  if (!n) return "0";
  if (n < 10) return n.toFixed(1);
  return count(Math.round(n));
}

/** A stable hue (0–359) for a string, for avatars: neighbouring ids get distant hues. */
export function hue(s) {
  let x = 2166136261;
  for (const c of String(s)) {
    x ^= c.codePointAt(0);
    x = Math.imul(x, 16777619);
  }
  x ^= x >>> 15;
  x = Math.imul(x, 0x2c1b3c6d);
  x ^= x >>> 12;
  return (x >>> 0) % 360;
}

// Nodes are few and sit side by side, so each gets a hue of its own from a palette, in the
// order the page first sees them (sorted within a snapshot, so stable across reloads).
const NODE_HUES = [250, 165, 25, 330, 200, 95, 285, 48];
const nodeHues = new Map();

/** The hue of cluster node `id`. */
export function nodeHue(id) {
  let h = nodeHues.get(id);
  if (h === undefined) {
    h = NODE_HUES[nodeHues.size % NODE_HUES.length];
    nodeHues.set(id, h);
  }
  return h;
}

/** Compact age for tight spots: "now", "4s", "3m", "2h", "5d". */
export function agoShort(ms, now = Date.now()) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 3) return "now";
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

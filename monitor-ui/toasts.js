// Unobtrusive notices in a corner: API errors and confirmations. The same message shown
// again while it is on screen only refreshes it instead of stacking.

import { h } from "./dom.js";

const shown = new Map();

/** Shows `message` for a few seconds; `kind` is "error" (default) or "info". */
export function toast(message, kind = "error", ms = 6000) {
  const box = document.getElementById("toasts");
  const key = `${kind}:${message}`;
  const existing = shown.get(key);
  if (existing) {
    clearTimeout(existing.timer);
    existing.timer = setTimeout(() => dismiss(key), ms);
    return;
  }
  const el = h("div", { class: `toast toast-${kind}` },
    h("span", { class: "toast-text" }, message),
    h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss", onclick: () => dismiss(key) }, "×"));
  box.append(el);
  shown.set(key, { el, timer: setTimeout(() => dismiss(key), ms) });
}

function dismiss(key) {
  const entry = shown.get(key);
  if (!entry) return;
  clearTimeout(entry.timer);
  shown.delete(key);
  entry.el.classList.add("toast-leaving");
  setTimeout(() => entry.el.remove(), 200);
}

/** An `ApiError` (or anything thrown) as a toast, with what was being done. */
export function toastError(what, err) {
  if (err && err.name === "AbortError") return;
  const msg = err && err.message ? err.message : String(err);
  toast(what ? `${what}: ${msg}` : msg, "error");
}

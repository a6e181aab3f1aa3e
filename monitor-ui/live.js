// The page's two feeds from the gateway: the `/api/events` websocket (deltas, as they
// happen), reconnected on its own with backoff, and a periodic `/api/cluster` poll (the
// state; events alone cannot rebuild it after a gap).

import { api } from "./api.js";

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;

/**
 * Keeps a websocket to `/api/events` open. Calls `onEvent(event)` for every JSON event,
 * `onOpen()` after each (re)connect and `onStatus({state, retryAt})` when the link changes
 * (`state` is "connecting", "open" or "closed"; `retryAt` is when the next attempt starts).
 */
export function connectEvents({ onEvent, onOpen, onStatus }) {
  let failures = 0;
  let socket = null;
  let timer = null;

  const url = () => {
    const u = new URL("api/events", document.baseURI);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    return u.href;
  };

  const open = () => {
    timer = null;
    onStatus({ state: "connecting" });
    try {
      socket = new WebSocket(url());
    } catch {
      retry();
      return;
    }
    socket.addEventListener("open", () => {
      failures = 0;
      onStatus({ state: "open" });
      onOpen();
    });
    socket.addEventListener("message", (msg) => {
      if (typeof msg.data !== "string") return;
      let event;
      try {
        event = JSON.parse(msg.data);
      } catch {
        return;
      }
      // A relay may batch events into one frame.
      for (const e of Array.isArray(event) ? event : [event]) {
        if (e && typeof e === "object" && e.type) onEvent(e);
      }
    });
    socket.addEventListener("close", retry);
  };

  const retry = () => {
    if (timer) return;
    socket = null;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** failures);
    const wait = Math.round(base / 2 + Math.random() * (base / 2));
    failures += 1;
    onStatus({ state: "closed", retryAt: Date.now() + wait });
    timer = setTimeout(open, wait);
  };

  // Coming back to a sleeping tab: try at once rather than waiting out the backoff.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && timer) {
      clearTimeout(timer);
      failures = 0;
      open();
    }
  });

  open();
}

/**
 * Fetches `/api/cluster` every `everyMs` (and whenever `now()` is called), never two at
 * once. Calls `onState(cluster)` or `onError(error)`.
 */
export function pollCluster({ everyMs, onState, onError }) {
  let inFlight = false;
  let again = false;
  const tick = async () => {
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    const ctl = new AbortController();
    const timeout = setTimeout(() => ctl.abort(), Math.max(everyMs * 2, 3000));
    try {
      onState(await api("api/cluster", { signal: ctl.signal }));
    } catch (e) {
      onError(e.name === "AbortError" ? new Error("The gateway took too long to answer") : e);
    } finally {
      clearTimeout(timeout);
      inFlight = false;
      if (again) {
        again = false;
        tick();
      }
    }
  };
  setInterval(tick, everyMs);
  tick();
  return { now: tick };
}

// The Instaface monitor page. Modules:
//
// | file | owns |
// | --- | --- |
// | `app.js` | wiring: feeds → model → views, the connection badge, unplugging |
// | `live.js` | the `/api/events` websocket (reconnecting) and the `/api/cluster` poll |
// | `cluster.js` | the cluster model: snapshots, event deltas, statuses, activity, serving |
// | `cards.js` | the cluster pane: node cards in their columns, lease countdowns, the shards, the activity list |
// | `metrics.js` | per-second reads, hits, misses and writes; who led when |
// | `charts.js` | the canvas charts drawn from those |
// | `graph.js` | the graph pane: timelines, posts, hash navigation |
// | `api.js` | REST calls, API errors, admin calls with the bearer token |
// | `token.js` | the admin-token dialog |
// | `toasts.js` | unobtrusive notices |
// | `dom.js` | element building and formatting helpers |

import { adminApi } from "./api.js";
import { ClusterModel } from "./cluster.js";
import { ClusterView } from "./cards.js";
import { Metrics, WINDOW_SECONDS } from "./metrics.js";
import { Charts } from "./charts.js";
import { GraphPane } from "./graph.js";
import { connectEvents, pollCluster } from "./live.js";
import { setText } from "./dom.js";
import { toast, toastError } from "./toasts.js";

const POLL_MS = 2000;
/** How often the serving badges count their leases down. */
const LEASE_TICK_MS = 100;

const metrics = new Metrics(WINDOW_SECONDS);
let scheduled = false;
const model = new ClusterModel({
  metrics,
  onChange: () => {
    // Events can arrive by the hundred; draw at most once a frame.
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      view.render();
    });
  },
});
const view = new ClusterView({ model, onUnplug: setUnplugged });
new Charts(metrics);
new GraphPane();

// The connection badge: the websocket's state, and whether the last poll answered.
const link = { socket: "connecting", retryAt: 0, pollOk: null };
function showLink() {
  const el = document.getElementById("conn");
  let state;
  let text;
  if (link.pollOk === false) {
    state = "down";
    text = "Gateway unreachable";
  } else if (link.socket === "open") {
    state = "live";
    text = "Live";
  } else if (link.socket === "closed") {
    state = "retry";
    const s = Math.max(0, Math.ceil((link.retryAt - Date.now()) / 1000));
    text = s > 0 ? `Reconnecting in ${s} s` : "Reconnecting…";
  } else {
    state = "connecting";
    text = "Connecting…";
  }
  if (el.dataset.state !== state) el.dataset.state = state;
  setText(document.getElementById("conn-text"), text);
}
setInterval(() => {
  showLink();
  view.render(); // "… ago" labels
}, 1000);
setInterval(() => {
  const now = Date.now();
  model.tick(now); // a lease that ran out on an unplugged node: it stopped serving
  view.tick(now); // the lease countdowns
}, LEASE_TICK_MS);

const poll = pollCluster({
  everyMs: POLL_MS,
  onState: (c) => {
    link.pollOk = true;
    model.applySnapshot(c);
    showLink();
  },
  onError: () => {
    link.pollOk = false;
    model.unreachable = true;
    model.onChange();
    showLink();
  },
});

connectEvents({
  onEvent: (e) => model.applyEvent(e),
  onOpen: () => poll.now(),
  onStatus: ({ state, retryAt }) => {
    link.socket = state;
    link.retryAt = retryAt || 0;
    showLink();
  },
});

/**
 * Unplugs a node from its peers (and, with `clients`, from clients too), or plugs it back
 * in, from its card's checkboxes; `control` is the box used, which keeps the focus.
 */
async function setUnplugged(id, unplugged, clients, control) {
  const node = model.nodes.get(id);
  if (!node || node.pending) return;
  node.pending = true;
  model.onChange();
  const isolate = unplugged && clients;
  try {
    const body = { unplugged, clients: isolate };
    const done = await adminApi(`api/cluster/nodes/${encodeURIComponent(id)}/unplugged`, { method: "PUT", body });
    if (done) {
      model.expectUnplugged(id, unplugged, isolate);
      const what = isolate ? "isolated from peers and clients" : unplugged ? "unplugged from its peers" : "plugged back in";
      toast(`${id} ${what}`, "info", 3000);
    }
  } catch (e) {
    toastError(`${isolate ? "Isolating" : unplugged ? "Unplugging" : "Plugging in"} ${id}`, e);
  } finally {
    node.pending = false;
    // Show what the cluster says, not what was asked for (a cancel or failure reverts).
    view.render();
    poll.now();
    control.focus({ preventScroll: true });
  }
}

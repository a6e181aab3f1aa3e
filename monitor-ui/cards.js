// The cluster pane's view: the three columns of node cards, the summary in the top bar, the
// shards' leaders (when the graph is split) and the activity list, drawn from a
// `ClusterModel`.
//
// Cards are kept per node and updated in place, never rebuilt, so a focused "plugged in"
// checkbox keeps its focus while updates stream in. Each card's serving badge counts its
// read lease down between snapshots (`tick`).

import { h, setText, setChildren, ago, agoShort, fullTime, count, nodeHue } from "./dom.js";
import { byId, columnOf, servingOf } from "./cluster.js";

const ROLE_LABEL = {
  follower: "Follower",
  pre_candidate: "Pre-candidate",
  candidate: "Candidate",
  leader: "Leader",
  unknown: "Unknown",
};

/** The three columns, the summary in the top bar and the activity list. */
export class ClusterView {
  /** `onUnplug(id, unplugged, clients, control)` asks for a node to be (un)plugged. */
  constructor({ model, onUnplug }) {
    this.model = model;
    this.onUnplug = onUnplug;
    this.cards = new Map();
    this.columns = {};
    for (const col of document.querySelectorAll("[data-column]")) {
      this.columns[col.dataset.column] = col;
    }
  }

  render() {
    const m = this.model;
    const now = Date.now();
    const hasNodes = m.nodes.size > 0;
    const columns = document.getElementById("columns");
    columns.hidden = !hasNodes;
    // While the gateway does not answer, the cards show the last state known: say so.
    columns.classList.toggle("is-stale", m.unreachable);
    document.getElementById("cluster-empty").hidden = hasNodes;
    if (!hasNodes) {
      const [title, text] = m.unreachable
        ? ["The gateway is not answering", "Retrying every few seconds; the cluster appears here when it answers."]
        : m.loaded
          ? ["No nodes yet", "The gateway reports no cluster members. Start the nodes and they appear here."]
          : ["Connecting to the gateway…", "The cluster appears here as soon as the gateway reports it."];
      setText(document.getElementById("cluster-empty-title"), title);
      setText(document.getElementById("cluster-empty-text"), text);
    }
    setText(document.getElementById("summary-leader"), m.leader ?? "none");
    setText(document.getElementById("summary-term"), m.term || "—");
    setText(document.getElementById("summary-members"), m.members.length ? m.members.join(", ") : "—");
    this.renderShards();

    const byColumn = { followers: [], leader: [], unreachable: [] };
    const ids = [...m.nodes.keys()].sort(byId);
    for (const id of ids) {
      const n = m.nodes.get(id);
      let card = this.cards.get(id);
      if (!card) {
        card = this.buildCard(n);
        this.cards.set(id, card);
      }
      this.updateCard(card, n, now);
      byColumn[columnOf(n)].push(card.el);
    }
    for (const [id, card] of this.cards) {
      if (!m.nodes.has(id)) {
        card.el.remove();
        this.cards.delete(id);
      }
    }
    for (const [name, els] of Object.entries(byColumn)) {
      const col = this.columns[name];
      const box = col.querySelector(".cards");
      const current = [...box.children];
      if (current.length !== els.length || current.some((el, i) => el !== els[i])) {
        const focused = document.activeElement;
        for (const el of els) box.append(el);
        if (focused && focused !== document.activeElement && document.contains(focused)) focused.focus();
      }
      col.classList.toggle("is-empty", els.length === 0);
      setText(col.querySelector("[data-count]"), els.length);
    }
    this.renderActivity(now);
  }

  /** Between renders: the serving badges' lease countdowns. */
  tick(now = Date.now()) {
    for (const [id, card] of this.cards) {
      const n = this.model.nodes.get(id);
      if (n) this.updateServing(card, n, now);
    }
  }

  buildCard(n) {
    const inputId = `plug-${n.id.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    // While a change is under way, further toggles are ignored (the box keeps focus,
    // which `disabled` would take away).
    const busy = (box) => {
      if (!this.model.nodes.get(n.id)?.pending) return false;
      box.checked = !box.checked;
      return true;
    };
    const checkbox = h("input", {
      type: "checkbox",
      id: inputId,
      class: "switch-input",
      dataset: { unplug: n.id },
      checked: true,
      onchange: () => {
        if (!busy(checkbox)) this.onUnplug(n.id, !checkbox.checked, clients.checked, checkbox);
      },
    });
    // The unplug mode: peers only (clients still reach the node, which serves reads until
    // its lease runs out), or clients too. While unplugged, changing it switches the mode.
    const clients = h("input", {
      type: "checkbox",
      class: "clients-input",
      dataset: { unplugClients: n.id },
      onchange: () => {
        if (busy(clients)) return;
        if (this.model.nodes.get(n.id)?.unplugged) this.onUnplug(n.id, true, clients.checked, clients);
        else card.preferClients = clients.checked;
      },
    });
    const el = h("article", { class: "node-card", dataset: { node: n.id, role: n.role }, "aria-label": `node ${n.id}` });
    el.style.setProperty("--node-hue", nodeHue(n.id));
    const parts = {
      role: h("span", { class: "role-badge" }),
      reason: h("span", { class: "reason-badge", hidden: true }),
      term: h("dd"),
      seq: h("dd"),
      entries: h("dd"),
      hits: h("span", { class: "cache-num" }),
      misses: h("span", { class: "cache-num" }),
      ratio: h("span", { class: "cache-ratio" }),
      bar: h("span", { class: "hit-bar-fill" }),
      statuses: h("ul", { class: "statuses", "aria-label": `recent statuses of ${n.id}` }),
      lease: h("span", { class: "lease", dataset: { serving: "unknown" }, hidden: true }),
      checkbox,
      clients,
      clientsLabel: h("label", { class: "clients-label" },
        clients, "also cut clients", h("span", { class: "visually-hidden" }, ` from ${n.id}`)),
    };
    el.append(
      h("header", { class: "card-head" },
        h("span", { class: "node-mark", "aria-hidden": "true" }),
        h("h4", { class: "node-id" }, n.id),
        parts.role,
        parts.reason),
      h("dl", { class: "node-stats" },
        h("div", {}, h("dt", {}, "Term"), parts.term),
        h("div", {}, h("dt", { title: "applied seq: every invalidation up to here is applied to its cache" },
          h("span", { class: "dt-long" }, "Applied seq"), h("span", { class: "dt-short" }, "Seq")), parts.seq),
        h("div", {}, h("dt", {}, "Entries"), parts.entries)),
      h("div", { class: "cache-line" },
        h("span", {}, parts.hits, " hits"),
        h("span", {}, parts.misses, " misses"),
        parts.ratio),
      h("div", { class: "hit-bar", "aria-hidden": "true" }, parts.bar),
      parts.statuses,
      h("div", { class: "plug" },
        checkbox,
        h("label", { for: inputId, class: "switch-label" },
          h("span", { class: "switch", "aria-hidden": "true" }),
          h("span", { class: "visually-hidden" }, `${n.id} `),
          "plugged in"),
        parts.lease,
        parts.clientsLabel),
    );
    // `preferClients`: the mode picked for the next unplug while the node is plugged in.
    const card = { el, parts, lastStatuses: "", preferClients: false };
    return card;
  }

  updateCard(card, n, now) {
    const { el, parts } = card;
    if (el.dataset.role !== n.role) el.dataset.role = n.role;
    const state = n.unplugged ? "unplugged" : n.reachable ? "ok" : "unreachable";
    if (el.dataset.state !== state) el.dataset.state = state;
    el.classList.toggle("is-pending", n.pending);
    setText(parts.role, ROLE_LABEL[n.role] || n.role);
    parts.role.className = `role-badge role-${n.role}`;
    parts.reason.hidden = state === "ok";
    setText(parts.reason, n.clients_unplugged ? "isolated" : n.unplugged ? "unplugged" : "no contact");
    const term = n.term ?? this.model.term;
    setText(parts.term, term ? term : "—");
    setText(parts.seq, count(n.applied_seq));
    setText(parts.entries, count(n.cache.entries));
    setText(parts.hits, count(n.cache.hits));
    setText(parts.misses, count(n.cache.misses));
    const lookups = n.cache.hits + n.cache.misses;
    const pct = lookups ? (100 * n.cache.hits) / lookups : 0;
    setText(parts.ratio, lookups ? `${pct.toFixed(pct >= 99.95 || pct < 10 ? 0 : 1)}% hit` : "no reads yet");
    parts.bar.style.width = `${pct}%`;
    this.updateServing(card, n, now);
    if (!n.pending) {
      parts.checkbox.checked = !n.unplugged;
      parts.clients.checked = n.unplugged ? n.clients_unplugged : card.preferClients;
    }
    parts.checkbox.setAttribute("aria-busy", String(n.pending));
    parts.clients.setAttribute("aria-busy", String(n.pending));
    const clientsTitle = n.unplugged
      ? n.clients_unplugged
        ? `${n.id} refuses clients too (total isolation). Untick to let clients reach it again while it stays cut off from its peers.`
        : `${n.id} is cut off from its peers only: clients still reach it. Tick to cut clients off too (total isolation).`
      : `When unplugging ${n.id}, cut it off from clients too (total isolation). Otherwise clients still reach it and it serves reads until its lease runs out.`;
    if (parts.clientsLabel.title !== clientsTitle) parts.clientsLabel.title = clientsTitle;

    // Statuses carry "… ago", so they change every second; rebuild only when they differ.
    const items = n.statuses.length
      ? n.statuses.map((s) => [s.kind, s.text, agoShort(s.ts, now), fullTime(s.ts)])
      : [["muted", "no events yet", "", ""]];
    const key = JSON.stringify(items);
    if (key !== card.lastStatuses) {
      card.lastStatuses = key;
      setChildren(parts.statuses, items.map(([kind, text, when, title]) =>
        h("li", { class: `status status-${kind || "plain"}` },
          h("span", { class: "status-text" }, text),
          when ? h("time", { title }, when) : null)));
    }
  }

  /**
   * The serving badge: "serving · lease 512 ms" counting down, "serving · lease renewing",
   * "not serving (no lease)", "not serving (isolated)". `data-serving` is "true", "false"
   * or "unknown"; a change makes the badge flash, so the moment is seen.
   */
  updateServing(card, n, now) {
    const badge = card.parts.lease;
    const s = servingOf(n, now);
    badge.hidden = s.serving === null;
    const value = s.serving === null ? "unknown" : String(s.serving);
    if (badge.dataset.serving !== value) {
      const flash = badge.dataset.serving !== "unknown";
      badge.dataset.serving = value;
      badge.classList.toggle("is-serving", s.serving === true);
      if (flash) {
        // Restart the animation.
        badge.classList.remove("is-flipped");
        void badge.offsetWidth;
        badge.classList.add("is-flipped");
      }
    }
    setText(badge, s.text);
    const title = {
      lease: `Serves reads. Its read lease had ${n.lease_ms} ms left at its last status answer, counted down here until the next one.`,
      renewing: `Serves reads. Its read lease had ${n.lease_ms} ms left at its last status answer; in touch with the leader, it renews it with every heartbeat.`,
      lease_ran_out: "Cut off from its peers, it cannot renew its read lease, which has run out: it refuses reads now.",
      no_lease: n.unplugged
        ? "Holds no read lease, so it refuses reads: cut off from its peers, it cannot get one."
        : "Holds no read lease, so it refuses reads.",
      isolated: "Cut off from clients as well as from its peers: it refuses every client request.",
      other: "Does not serve reads right now.",
      unknown: "Not reported yet.",
    }[s.why];
    if (badge.title !== title) badge.title = title;
  }

  /** Each shard's leader and term; shown only when the graph is split into shards. */
  renderShards() {
    const shards = this.model.shards;
    document.getElementById("shards").hidden = shards.length < 2;
    const key = JSON.stringify(shards);
    if (shards.length < 2 || key === this.lastShards) return;
    this.lastShards = key;
    setChildren(document.getElementById("shard-list"), shards.map((s) => {
      const li = h("li", { class: "shard", dataset: { shard: s.shard, leader: s.leader ?? "" } },
        h("span", { class: "shard-id" }, `shard ${s.shard}`),
        s.leader
          ? h("span", { class: "shard-leader" }, h("span", { class: "node-mark", "aria-hidden": "true" }), s.leader)
          : h("span", { class: "shard-leader is-none" }, "no leader"),
        h("span", { class: "shard-term" }, s.term ? `term ${s.term}` : ""));
      if (s.leader) li.style.setProperty("--node-hue", nodeHue(s.leader));
      return li;
    }));
  }

  renderActivity(now) {
    const list = document.getElementById("activity");
    const items = this.model.activity;
    document.getElementById("activity-empty").hidden = items.length > 0;
    const key = JSON.stringify(items.map((a) => [a.text, ago(a.ts, now)]));
    if (key === this.lastActivity) return;
    this.lastActivity = key;
    setChildren(list, items.map((a) => {
      const li = h("li", { class: `activity-item activity-${a.kind}` },
        h("span", { class: "activity-dot", "aria-hidden": "true" }),
        h("span", { class: "activity-text" }, a.text),
        h("time", { title: fullTime(a.ts) }, ago(a.ts, now)));
      if (a.node) li.style.setProperty("--node-hue", nodeHue(a.node));
      return li;
    }));
  }
}

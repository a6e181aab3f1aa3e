// What the page knows of the cluster: each node's state from `/api/cluster` snapshots (the
// truth) and the event deltas in between, each node's recent statuses, and the activity log.
//
// With several shards every node hosts a member of each shard's leader group. The cards show
// each node's member of shard 0's group (as `/api/cluster` does); the other groups show as
// their leader and term only (`shards`).

import { count, nodeHue } from "./dom.js";

const MAX_STATUSES = 4;
const MAX_ACTIVITY = 40;

/** How long an accepted unplug command may take to show in `/api/cluster`. */
const EXPECT_MS = 6000;

/** What an unplug state is called: in statuses, and after "was" in the activity list. */
function unplugText(n) {
  if (n.clients_unplugged) return "isolated from peers and clients";
  return n.unplugged ? "unplugged from its peers" : "plugged back in";
}

/** Node ids in natural order: n2 before n10. */
export const byId = (a, b) => a.localeCompare(b, undefined, { numeric: true });

/** Which column a node belongs in. */
export function columnOf(node) {
  if (!node.reachable || node.unplugged) return "unreachable";
  return node.role === "leader" ? "leader" : "followers";
}

/**
 * Whether node `n` serves reads as far as the page can tell at `now`:
 * `{serving: true|false|null, left, text, why}`. `left` is the ms left on its read lease:
 * `lease_ms` as of its latest status answer, counted down here until the next snapshot.
 * A node in touch with the leader renews its lease with every heartbeat, so a countdown
 * that reaches 0 only means the page has not heard since; a node cut off from its peers
 * (since that answer) cannot renew it, so when the countdown reaches 0 it serves no more —
 * shown at that moment, before the next snapshot confirms it.
 */
export function servingOf(n, now = Date.now()) {
  const left = n.lease_ms === null ? null : Math.max(0, Math.ceil(n.lease_ms - (now - n.leaseAt)));
  if (n.serving === null) return { serving: null, left, text: "not reported yet", why: "unknown" };
  if (n.clients_unplugged) return { serving: false, left, text: "not serving (isolated)", why: "isolated" };
  if (!n.serving) {
    return left ? { serving: false, left, text: "not serving", why: "other" } : { serving: false, left: 0, text: "not serving (no lease)", why: "no_lease" };
  }
  if (left > 0) return { serving: true, left, text: `serving · lease ${left} ms`, why: "lease" };
  if (n.unplugged && n.leaseAt >= n.unpluggedSince) {
    return { serving: false, left: 0, text: "not serving (no lease)", why: "lease_ran_out" };
  }
  return { serving: true, left: 0, text: "serving · lease renewing", why: "renewing" };
}

/** What the page knows of the cluster; `onChange` fires after every update. */
export class ClusterModel {
  constructor({ metrics, onChange }) {
    this.metrics = metrics;
    this.onChange = onChange;
    this.nodes = new Map();
    this.leader = null;
    this.term = 0;
    this.members = [];
    this.shards = []; // [{shard, leader, term}], in shard order
    this.loaded = false;
    this.unreachable = false; // the last /api/cluster poll failed
    this.activity = [];
  }

  node(id) {
    let n = this.nodes.get(id);
    if (!n) {
      n = {
        id,
        role: "follower",
        term: null,
        reachable: true,
        unplugged: false, // cut off from its peers
        clients_unplugged: false, // … and from clients (total isolation)
        unpluggedSince: 0, // when the page learned it was unplugged
        serving: null, // serves reads, per its latest status answer (null: not reported yet)
        servingShown: null, // what `servingOf` last said, to notice it change
        applied_seq: 0,
        cache: { hits: 0, misses: 0, entries: 0 },
        lease_ms: null,
        leaseAt: 0, // when `lease_ms` was measured (page clock)
        statuses: [],
        pending: false,
        expected: null, // {unplugged, clients, until}: an accepted unplug command not yet visible
      };
      this.nodes.set(id, n);
    }
    return n;
  }

  /** A `/api/cluster` answer: the truth, replacing whatever the events suggested. */
  applySnapshot(c) {
    const now = Date.now();
    this.loaded = true;
    this.unreachable = false;
    this.term = Number(c.term) || 0;
    this.leader = c.leader ?? null;
    this.members = Array.isArray(c.members) ? c.members.map(String) : [];
    this.shards = (Array.isArray(c.shards) ? c.shards : []).map((s) => ({
      shard: Number(s.shard) || 0,
      leader: s.leader === undefined || s.leader === null ? null : String(s.leader),
      term: Number(s.term) || 0,
    }));
    const seen = new Set();
    const listed = Array.isArray(c.nodes) ? c.nodes : [];
    for (const id of listed.map((s) => String(s.id)).sort(byId)) nodeHue(id);
    for (const s of listed) {
      const id = String(s.id);
      seen.add(id);
      const n = this.node(id);
      const was = unplugText(n);
      const wasUnplugged = n.unplugged;
      n.role = s.role || "follower";
      n.reachable = s.reachable !== false;
      n.unplugged = Boolean(s.unplugged);
      n.clients_unplugged = n.unplugged && Boolean(s.clients_unplugged);
      n.serving = s.serving === undefined || s.serving === null ? null : Boolean(s.serving);
      if (n.expected) {
        // The gateway accepted the command before the node applied it: keep showing what
        // was asked for a few seconds rather than flipping the switch back and forth.
        const e = n.expected;
        if ((n.unplugged === e.unplugged && n.clients_unplugged === e.clients) || now > e.until) {
          n.expected = null;
        } else {
          n.unplugged = e.unplugged;
          n.clients_unplugged = e.clients;
          if (e.clients) n.serving = false;
        }
      }
      if (n.unplugged && !wasUnplugged) n.unpluggedSince = now;
      if (s.lease_ms !== undefined && s.lease_ms !== null) {
        // `lease_ms` is as of the node's latest status answer, `status_age_ms` ago.
        n.lease_ms = Number(s.lease_ms) || 0;
        n.leaseAt = now - Math.max(0, Number(s.status_age_ms) || 0);
      }
      n.applied_seq = Number(s.applied_seq) || 0;
      if (s.term !== undefined && s.term !== null) n.term = Number(s.term);
      if (s.cache) {
        n.cache = { hits: Number(s.cache.hits) || 0, misses: Number(s.cache.misses) || 0, entries: Number(s.cache.entries) || 0 };
        this.metrics.readSample(id, n.cache.hits, n.cache.misses, now);
      }
      if (unplugText(n) !== was && n.statuses.length) {
        this.status(n, unplugText(n), n.unplugged ? "bad" : "good", now);
      }
    }
    for (const id of [...this.nodes.keys()]) {
      if (!seen.has(id) && !this.members.includes(id)) this.nodes.delete(id);
    }
    for (const id of this.members) {
      if (!seen.has(id)) {
        // A member the gateway could not reach at all.
        const n = this.node(id);
        n.reachable = false;
      }
    }
    this.metrics.leaderAt(this.leader, this.term, now);
    this.trackServing(now);
    this.onChange();
  }

  /** One websocket event (a delta). */
  applyEvent(e) {
    const shard = Number(e.shard) || 0;
    // A node is unplugged as a whole, whichever group says so.
    if (shard !== 0 && e.type !== "unplugged") {
      this.applyShardEvent(shard, e);
      return;
    }
    const now = Date.now();
    const id = e.node === undefined || e.node === null ? null : String(e.node);
    const term = Number(e.term) || 0;
    const n = id ? this.node(id) : null;
    // Another shard's `unplugged` event carries that group's term.
    if (n && term && shard === 0) n.term = term;
    switch (e.type) {
      case "leader":
        n.role = "leader";
        if (term >= this.term) {
          this.term = term;
          this.leader = id;
        }
        this.metrics.leaderAt(id, term, now);
        this.status(n, `leader of term ${term}`, "good", now);
        this.log(now, `${id} became leader of term ${term}`, "leader", id);
        break;
      case "follower":
        n.role = "follower";
        if (this.leader === id) this.leader = e.leader ?? null;
        if (e.leader && term >= this.term) {
          this.leader = String(e.leader);
          this.term = term;
        }
        this.status(n, e.leader ? `follower of ${e.leader}` : "follower, no leader known", "", now);
        break;
      case "candidacy":
        if (e.state === "started") {
          n.role = e.pre_vote ? "pre_candidate" : "candidate";
          const text = e.pre_vote ? `pre-vote for term ${term}` : `standing for election in term ${term}`;
          this.status(n, text, "warn", now);
          if (!e.pre_vote) {
            this.metrics.election(now);
            this.log(now, `${id} is standing for election in term ${term}`, "election", id);
          }
        } else if (e.state === "abandoned") {
          n.role = "follower";
          this.status(n, `abandoned ${e.pre_vote ? "pre-vote" : "candidacy"} in term ${term}`, "muted", now);
          if (!e.pre_vote) this.log(now, `${id} abandoned its candidacy in term ${term}`, "muted", id);
        } else if (e.state === "won") {
          this.status(n, `won ${e.pre_vote ? "the pre-vote" : "the election"} in term ${term}`, "good", now);
        }
        break;
      case "reachable": {
        if (e.peer === undefined || e.peer === null) break;
        const peer = this.node(String(e.peer));
        const reachable = Boolean(e.reachable);
        if (peer.reachable !== reachable) {
          this.log(now, `leader ${id} ${reachable ? "reaches" : "lost contact with"} ${peer.id}`, reachable ? "good" : "bad", peer.id);
        }
        peer.reachable = reachable;
        this.status(peer, reachable ? `reachable from leader ${id}` : `unreachable from leader ${id}`, reachable ? "good" : "bad", now);
        break;
      }
      case "cache": {
        const hits = Number(e.hits) || 0;
        const misses = Number(e.misses) || 0;
        const dh = Math.max(0, hits - n.cache.hits);
        const dm = Math.max(0, misses - n.cache.misses);
        n.cache = { hits, misses, entries: Number(e.entries) || 0 };
        if (e.applied_seq !== undefined) n.applied_seq = Math.max(n.applied_seq, Number(e.applied_seq) || 0);
        this.metrics.readSample(id, hits, misses, now);
        if (dh || dm) this.status(n, `+${count(dh)} hits · +${count(dm)} misses`, "cache", now, true);
        break;
      }
      case "unplugged": {
        const wasUnplugged = n.unplugged;
        n.unplugged = Boolean(e.unplugged);
        // Peers only: clients still reach it, and it serves until its lease runs out.
        // Clients too: it refuses every client request from now on.
        n.clients_unplugged = n.unplugged && Boolean(e.clients);
        if (n.unplugged && !wasUnplugged) n.unpluggedSince = now;
        if (n.clients_unplugged) n.serving = false;
        n.expected = null;
        const kind = n.unplugged ? "bad" : "good";
        this.status(n, unplugText(n), kind, now);
        const more = n.unplugged && !n.clients_unplugged ? " (clients still reach it)" : "";
        this.log(now, `${id} was ${unplugText(n)}${more}`, kind, id);
        break;
      }
      case "invalidation": {
        const seq = Number(e.seq) || 0;
        for (const peer of Array.isArray(e.acked_by) ? e.acked_by : []) {
          const p = this.node(String(peer));
          p.applied_seq = Math.max(p.applied_seq, seq);
        }
        break;
      }
      case "write": {
        const seq = Number(e.seq) || 0;
        n.applied_seq = Math.max(n.applied_seq, seq);
        this.metrics.write(now);
        this.logWrite(now, id, seq, e.op);
        break;
      }
      default:
        return;
    }
    this.trackServing(now);
    this.onChange();
  }

  /**
   * An event of shard `shard`'s leader group (not shard 0's): it says nothing of the roles,
   * terms and caches the cards show. Its leader changes go to `shards`, its writes to the
   * write rate (the cluster's) and the activity list.
   */
  applyShardEvent(shard, e) {
    const now = Date.now();
    const id = String(e.node);
    const term = Number(e.term) || 0;
    if (e.type === "leader") {
      const s = this.shards.find((x) => x.shard === shard);
      if (s && term >= s.term) {
        s.leader = id;
        s.term = term;
      }
      this.log(now, `${id} became leader of shard ${shard} in term ${term}`, "leader", id);
    } else if (e.type === "write") {
      this.metrics.write(now);
      this.logWrite(now, id, Number(e.seq) || 0, e.op, shard);
    } else {
      return;
    }
    this.onChange();
  }

  /** An unplug command for `id` was accepted: show it until the cluster reports it. */
  expectUnplugged(id, unplugged, clients = false) {
    const now = Date.now();
    const n = this.node(id);
    if (unplugged && !n.unplugged) n.unpluggedSince = now;
    n.unplugged = unplugged;
    n.clients_unplugged = unplugged && clients;
    if (n.clients_unplugged) n.serving = false;
    n.expected = { unplugged, clients: n.clients_unplugged, until: now + EXPECT_MS };
    this.trackServing(now);
    this.onChange();
  }

  /**
   * Between snapshots: a lease counted down to 0 on a node that cannot renew it means it
   * stopped serving just now. Call often (the countdown's pace).
   */
  tick(now = Date.now()) {
    if (this.trackServing(now)) this.onChange();
  }

  /**
   * Notes each node that starts or stops serving reads (per `servingOf`) in its statuses
   * and the activity list; true if any did.
   */
  trackServing(now) {
    let changed = false;
    for (const n of this.nodes.values()) {
      const s = servingOf(n, now);
      if (s.serving === null) continue;
      const before = n.servingShown;
      n.servingShown = s.serving;
      if (before === null || before === s.serving) continue;
      changed = true;
      if (s.serving) {
        this.status(n, "serving reads again", "good", now);
        this.log(now, `${n.id} serves reads again`, "good", n.id);
      } else {
        const why = {
          isolated: "cut off from clients",
          no_lease: "no read lease",
          lease_ran_out: "its read lease ran out",
        }[s.why];
        this.status(n, why ? `stopped serving reads: ${why}` : "stopped serving reads", "bad", now);
        this.log(now, `${n.id} stopped serving reads${why ? `: ${why}` : ""}`, "bad", n.id);
      }
    }
    return changed;
  }

  /** Adds a line to a node's recent statuses; a `sticky` line replaces one of its kind on top. */
  status(n, text, kind, ts, sticky = false) {
    const top = n.statuses[0];
    if (top && (top.text === text || (sticky && top.kind === kind))) {
      top.text = text;
      top.ts = ts;
      return;
    }
    n.statuses.unshift({ text, kind, ts });
    n.statuses.length = Math.min(n.statuses.length, MAX_STATUSES);
  }

  log(ts, text, kind, node) {
    this.activity.unshift({ ts, text, kind, node });
    this.activity.length = Math.min(this.activity.length, MAX_ACTIVITY);
  }

  /**
   * Writes come in bursts: consecutive ones within a few seconds share one line. Seqs are
   * per shard, so each shard's writes (`shard` of several) get lines of their own.
   */
  logWrite(ts, node, seq, op, shard = 0) {
    const where = shard ? ` (shard ${shard})` : "";
    const top = this.activity[0];
    if (top && top.kind === "write" && top.node === node && top.shard === shard && ts - top.ts < 5000) {
      top.ts = ts;
      top.writes += 1;
      top.last = seq;
      top.text = `${top.writes} writes on ${node}${where}, seq ${top.first}–${seq}`;
      return;
    }
    this.log(ts, `write on ${node}${where}: ${op || "change"} (seq ${seq})`, "write", node);
    Object.assign(this.activity[0], { writes: 1, first: seq, last: seq, shard });
  }
}

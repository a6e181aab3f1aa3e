// The numbers behind the live charts: per-second buckets of reads, hits, misses and writes,
// and who led when.
//
// Reads are cache lookups (hits + misses) summed over the nodes. Nodes report running
// totals (in `/api/cluster` and in `cache` events), so each new total adds its increase over
// the highest total seen from that node, spread evenly over the time since that total.

export const WINDOW_SECONDS = 300;

export class Metrics {
  constructor(windowSeconds = WINDOW_SECONDS) {
    this.window = windowSeconds;
    this.buckets = new Map(); // second → {reads, hits, misses, writes}
    this.totals = new Map(); // node → {t, hits, misses}
    this.segments = []; // {leader, term, from, to}
    this.elections = []; // ms of each real (not pre-vote) candidacy
    this.started = Date.now();
  }

  bucket(sec) {
    let b = this.buckets.get(sec);
    if (!b) {
      b = { hits: 0, misses: 0, writes: 0 };
      this.buckets.set(sec, b);
    }
    return b;
  }

  /** A node's running cache totals, seen at `now`. */
  readSample(node, hits, misses, now) {
    const prev = this.totals.get(node);
    if (!prev || hits + misses < (prev.hits + prev.misses) / 2) {
      // First sight (its history is not "now"), or the node restarted with fresh counters.
      this.totals.set(node, { t: now, hits, misses });
      return;
    }
    const dh = Math.max(0, hits - prev.hits);
    const dm = Math.max(0, misses - prev.misses);
    if (!dh && !dm) return;
    this.spread(prev.t, now, dh, dm);
    this.totals.set(node, { t: now, hits: Math.max(hits, prev.hits), misses: Math.max(misses, prev.misses) });
  }

  spread(from, to, hits, misses) {
    from = Math.max(from, to - this.window * 1000);
    const span = to - from;
    const first = Math.floor(from / 1000);
    const last = Math.floor(to / 1000);
    if (span <= 0 || first === last) {
      const b = this.bucket(last);
      b.hits += hits;
      b.misses += misses;
      return;
    }
    for (let s = first; s <= last; s++) {
      const overlap = Math.min(to, (s + 1) * 1000) - Math.max(from, s * 1000);
      if (overlap <= 0) continue;
      const b = this.bucket(s);
      b.hits += (hits * overlap) / span;
      b.misses += (misses * overlap) / span;
    }
  }

  write(now) {
    this.bucket(Math.floor(now / 1000)).writes += 1;
  }

  election(now) {
    this.elections.push(now);
  }

  /** Who leads (null: nobody) in `term`, as seen at `now`. */
  leaderAt(leader, term, now) {
    const last = this.segments[this.segments.length - 1];
    if (last && last.leader === leader && (last.term === term || !leader)) {
      last.to = now;
      return;
    }
    // A snapshot that left before the latest event arrives after it: never go back a term.
    if (last && term < last.term) return;
    if (last) last.to = now;
    this.segments.push({ leader, term, from: now, to: now });
  }

  prune(now) {
    const oldest = Math.floor(now / 1000) - this.window - 2;
    for (const sec of this.buckets.keys()) if (sec < oldest) this.buckets.delete(sec);
    const cutoff = now - this.window * 1000;
    while (this.segments.length > 1 && this.segments[1].from < cutoff && this.segments[0].to < cutoff) this.segments.shift();
    while (this.elections.length && this.elections[0] < cutoff) this.elections.shift();
  }

  /**
   * Seconds the charts span: the minutes the page has watched, rounded up, at least one and
   * at most the window. A page opened a minute ago shows that minute, not 4 empty ones.
   */
  span(now) {
    const watched = (now - this.started) / 1000;
    return Math.min(this.window, Math.max(60, Math.ceil(watched / 60) * 60));
  }

  /** Per-second series over the span, oldest first, ending with the last full second. */
  series(now) {
    const end = Math.floor(now / 1000) - 1;
    const out = [];
    for (let s = end - this.span(now) + 1; s <= end; s++) {
      const b = this.buckets.get(s);
      out.push({ sec: s, reads: b ? b.hits + b.misses : 0, hits: b ? b.hits : 0, misses: b ? b.misses : 0, writes: b ? b.writes : 0 });
    }
    return out;
  }

  /** Seconds of the window the page has actually watched. */
  watched(now) {
    return Math.min(this.window, Math.floor((now - this.started) / 1000));
  }

  /** Leader changes in the span: segments with a leader that follow another one. */
  leaderChanges(now) {
    const cutoff = now - this.span(now) * 1000;
    let changes = 0;
    let prev = null;
    for (const s of this.segments) {
      if (!s.leader) continue;
      if (prev && (prev.leader !== s.leader || prev.term !== s.term) && s.from >= cutoff) changes += 1;
      prev = s;
    }
    return changes;
  }
}

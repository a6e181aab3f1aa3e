// The live charts, drawn on <canvas> from `Metrics`: reads and writes per second, the cache
// hit rate, and which node led when.

import { setText, rate, nodeHue } from "./dom.js";

const SMOOTH_SECONDS = 5;

/** Draws the three charts once a second and on resize. */
export class Charts {
  constructor(metrics) {
    this.metrics = metrics;
    this.rate = document.querySelector("#chart-rate canvas");
    this.hit = document.querySelector("#chart-hit canvas");
    this.leader = document.querySelector("#chart-leader canvas");
    this.legend = document.getElementById("leader-legend");
    const ro = new ResizeObserver(() => this.draw());
    for (const c of [this.rate, this.hit, this.leader]) ro.observe(c);
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => this.draw());
    setInterval(() => this.draw(), 1000);
  }

  colors() {
    const css = getComputedStyle(document.documentElement);
    const v = (name) => css.getPropertyValue(name).trim();
    return {
      grid: v("--chart-grid"),
      axis: v("--text-muted"),
      reads: v("--reads"),
      writes: v("--writes"),
      hit: v("--hit"),
      none: v("--chart-none"),
      noLeader: v("--bad-soft"),
      noLeaderStripe: withAlpha(v("--bad"), 0.35),
      text: v("--text"),
      font: `11px ${v("--font")}`,
    };
  }

  draw() {
    const now = Date.now();
    const m = this.metrics;
    m.prune(now);
    const series = m.series(now);
    const recent = series.slice(-SMOOTH_SECONDS);
    const watched = Math.max(1, Math.min(SMOOTH_SECONDS, m.watched(now)));
    const sum = (arr, k) => arr.reduce((a, b) => a + b[k], 0);
    setText(document.querySelector('[data-stat="reads"]'), rate(sum(recent, "reads") / watched));
    setText(document.querySelector('[data-stat="writes"]'), rate(sum(recent, "writes") / watched));
    const last30 = series.slice(-30);
    const lookups = sum(last30, "reads");
    setText(document.querySelector('[data-stat="hit-rate"]'), lookups >= 1 ? `${((100 * sum(last30, "hits")) / lookups).toFixed(1)}%` : "—");
    const changes = m.leaderChanges(now);
    setText(document.querySelector('[data-stat="leader-changes"]'), changes);
    setText(document.querySelector('[data-stat="leader-changes-label"]'), changes === 1 ? "leader change" : "leader changes");

    const minutes = Math.round(m.span(now) / 60);
    setText(document.getElementById("window-label"), minutes === 1 ? "minute" : `${minutes} minutes`);

    const c = this.colors();
    this.drawRates(series, c, now);
    this.drawHitRate(series, c, now);
    this.drawLeadership(c, now);
  }

  /** Sizes a canvas to its CSS box at the device's pixel ratio; returns its context. */
  prepare(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const hgt = canvas.clientHeight;
    if (!w || !hgt) return null;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(hgt * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    return { ctx, w, h: hgt };
  }

  /** Plot area inside a canvas, leaving room for the axis labels. */
  frame(w, hgt) {
    return { left: 36, right: w - 8, top: 8, bottom: hgt - 18 };
  }

  /** Time labels under a chart: as many as fit, at round steps, "now" on the right. */
  xAxis(ctx, f, c, now) {
    ctx.fillStyle = c.axis;
    ctx.font = c.font;
    ctx.textBaseline = "top";
    const span = this.metrics.span(now);
    const width = f.right - f.left;
    const fits = Math.max(2, Math.floor(width / 64));
    // Round steps only: past a minute, labels every half minute at the finest.
    const steps = span > 60 ? [30, 60, 120, 300] : [10, 15, 20, 30, 60];
    const step = steps.find((st) => span / st <= fits - 1) || span;
    for (let ago = 0; ago <= span; ago += step) {
      const x = f.left + ((span - ago) / span) * width;
      ctx.textAlign = ago === 0 ? "right" : ago === span ? "left" : "center";
      const label = ago === 0 ? "now" : ago % 60 === 0 ? `−${ago / 60} min` : `−${ago} s`;
      ctx.fillText(label, x, f.bottom + 5);
    }
  }

  yGrid(ctx, f, c, max, fmt) {
    ctx.strokeStyle = c.grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = c.axis;
    ctx.font = c.font;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 2; i++) {
      const v = (max * i) / 2;
      const y = Math.round(f.bottom - ((f.bottom - f.top) * i) / 2) + 0.5;
      ctx.beginPath();
      ctx.moveTo(f.left, y);
      ctx.lineTo(f.right, y);
      ctx.stroke();
      ctx.fillText(fmt(v), f.left - 6, y);
    }
  }

  line(ctx, f, values, max, color, fill) {
    const n = values.length;
    if (!n) return;
    const x = (i) => f.left + (i / (n - 1)) * (f.right - f.left);
    const y = (v) => f.bottom - (Math.min(v, max) / max) * (f.bottom - f.top);
    ctx.beginPath();
    let started = false;
    let firstX = 0;
    let lastX = 0;
    for (let i = 0; i < n; i++) {
      if (values[i] === null) continue;
      if (!started) {
        ctx.moveTo(x(i), y(values[i]));
        firstX = x(i);
        started = true;
      } else ctx.lineTo(x(i), y(values[i]));
      lastX = x(i);
    }
    if (!started) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.75;
    ctx.lineJoin = "round";
    ctx.stroke();
    if (fill) {
      ctx.lineTo(lastX, f.bottom);
      ctx.lineTo(firstX, f.bottom);
      ctx.closePath();
      const g = ctx.createLinearGradient(0, f.top, 0, f.bottom);
      g.addColorStop(0, withAlpha(color, 0.28));
      g.addColorStop(1, withAlpha(color, 0.02));
      ctx.fillStyle = g;
      ctx.fill();
    }
  }

  /** Only the part of the window the page has watched is drawn; before that is unknown. */
  visible(series, now) {
    const watched = this.metrics.watched(now);
    return series.map((p, i) => (i >= series.length - watched ? p : null));
  }

  drawRates(series, c, now) {
    const p = this.prepare(this.rate);
    if (!p) return;
    const { ctx, w, h: hgt } = p;
    const f = this.frame(w, hgt);
    const vis = this.visible(series, now);
    const smooth = (k) => vis.map((pt, i) => {
      if (!pt) return null;
      // A 3-second moving average keeps 2 s poll steps from drawing a saw.
      let s = 0;
      let cnt = 0;
      for (let j = Math.max(0, i - 2); j <= i; j++) if (vis[j]) { s += vis[j][k]; cnt++; }
      return s / cnt;
    });
    const reads = smooth("reads");
    const writes = smooth("writes");
    const peak = Math.max(1, ...reads.map((v) => v || 0), ...writes.map((v) => v || 0));
    const max = niceCeil(peak);
    this.yGrid(ctx, f, c, max, (v) => (v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k` : `${Math.round(v * 10) / 10}`));
    this.xAxis(ctx, f, c, now);
    this.line(ctx, f, reads, max, c.reads, true);
    this.line(ctx, f, writes, max, c.writes, true);
  }

  drawHitRate(series, c, now) {
    const p = this.prepare(this.hit);
    if (!p) return;
    const { ctx, w, h: hgt } = p;
    const f = this.frame(w, hgt);
    this.yGrid(ctx, f, c, 100, (v) => `${v}%`);
    this.xAxis(ctx, f, c, now);
    const vis = this.visible(series, now);
    // Over a trailing 5 s window: one lookup a second would otherwise swing 0–100%.
    const values = vis.map((pt, i) => {
      if (!pt) return null;
      let hits = 0;
      let reads = 0;
      for (let j = Math.max(0, i - SMOOTH_SECONDS + 1); j <= i; j++) if (vis[j]) { hits += vis[j].hits; reads += vis[j].reads; }
      return reads >= 0.5 ? (100 * hits) / reads : null;
    });
    this.line(ctx, f, values, 100, c.hit, true);
  }

  drawLeadership(c, now) {
    const p = this.prepare(this.leader);
    if (!p) return;
    const { ctx, w, h: hgt } = p;
    const f = { left: 36, right: w - 8, top: 10, bottom: hgt - 18 };
    const span = this.metrics.span(now) * 1000;
    const start = now - span;
    const x = (t) => f.left + ((Math.max(t, start) - start) / span) * (f.right - f.left);
    const bandTop = f.top + 4;
    const bandH = f.bottom - bandTop;

    ctx.fillStyle = c.none;
    roundRect(ctx, f.left, bandTop, f.right - f.left, bandH, 4);
    ctx.fill();

    const seen = new Map();
    let sawNone = false;
    const segs = this.metrics.segments;
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      const to = i === segs.length - 1 ? now : segs[i + 1].from;
      if (to < start) continue;
      const x0 = x(s.from);
      const x1 = Math.max(x0 + 2, x(to));
      if (!s.leader) {
        // Watched, and nobody led: hatched, unlike the plain band before the page opened.
        ctx.save();
        ctx.beginPath();
        ctx.rect(x0, bandTop, x1 - x0, bandH);
        ctx.clip();
        ctx.fillStyle = c.noLeader;
        ctx.fillRect(x0, bandTop, x1 - x0, bandH);
        ctx.strokeStyle = c.noLeaderStripe;
        ctx.lineWidth = 2;
        for (let sx = x0 - bandH; sx < x1; sx += 6) {
          ctx.beginPath();
          ctx.moveTo(sx, bandTop + bandH);
          ctx.lineTo(sx + bandH, bandTop);
          ctx.stroke();
        }
        ctx.restore();
        sawNone = true;
        continue;
      }
      const hh = nodeHue(s.leader);
      seen.set(s.leader, hh);
      ctx.fillStyle = `hsl(${hh} 62% 58%)`;
      ctx.fillRect(x0, bandTop, x1 - x0, bandH);
      if (x1 - x0 > 64) {
        ctx.fillStyle = "#fff";
        ctx.font = `600 ${c.font}`;
        ctx.textAlign = "left";
        ctx.textBaseline = "middle";
        ctx.fillText(`${s.leader} · term ${s.term}`, x0 + 6, bandTop + bandH / 2);
      }
      if (i > 0 && s.from >= start) {
        ctx.fillStyle = c.text;
        ctx.fillRect(x0 - 1, f.top, 2, f.bottom - f.top);
      }
    }
    // Real elections started, as small ticks above the band.
    ctx.fillStyle = c.writes;
    for (const t of this.metrics.elections) {
      if (t < start) continue;
      const xe = x(t);
      ctx.beginPath();
      ctx.moveTo(xe - 4, f.top - 4);
      ctx.lineTo(xe + 4, f.top - 4);
      ctx.lineTo(xe, f.top + 3);
      ctx.closePath();
      ctx.fill();
    }
    this.xAxis(ctx, f, c, now);

    const key = [...seen.entries()].map(([k, v]) => `${k}:${v}`).join(",") + (sawNone ? ",none" : "");
    if (key !== this.legendKey) {
      this.legendKey = key;
      const keys = [...seen.entries()].sort().map(([id, hh]) => {
        const el = document.createElement("span");
        el.className = "leader-key";
        el.style.setProperty("--node-hue", hh);
        el.textContent = id;
        return el;
      });
      if (sawNone) {
        const el = document.createElement("span");
        el.className = "leader-key leader-key-none";
        el.textContent = "no leader";
        keys.push(el);
      }
      this.legend.replaceChildren(...keys);
    }
  }
}

function niceCeil(v) {
  const exp = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * exp) return m * exp;
  return 10 * exp;
}

function withAlpha(color, a) {
  // Accepts #rrggbb (the CSS variables use it).
  const m = /^#([0-9a-f]{6})$/i.exec(color);
  if (!m) return color;
  const n = parseInt(m[1], 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

function roundRect(ctx, x, y, w, hgt, r) {
  ctx.beginPath();
  ctx.moveTo(x + r, y);
  ctx.arcTo(x + w, y, x + w, y + hgt, r);
  ctx.arcTo(x + w, y + hgt, x, y + hgt, r);
  ctx.arcTo(x, y + hgt, x, y, r);
  ctx.arcTo(x, y, x + w, y, r);
  ctx.closePath();
}

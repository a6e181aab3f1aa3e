// The graph pane: a user's timeline (their posts with who liked them, their likes with who
// posted them), a post with its authors and likers, and any other entity's attributes.
// Navigation lives in the URL hash (#/user/12, #/post/40, #/entity/7) so back and forward
// work; every person and post is a link carrying `data-entity="<id>"`.

import { api, ApiError } from "./api.js";
import { h, setChildren, ago, fullTime, count, hue } from "./dom.js";
import { toast, toastError } from "./toasts.js";

const PAGE = 30;
const CHIPS = 10;
const ASSOC_LIMIT = 100;

export class GraphPane {
  constructor() {
    this.view = document.getElementById("graph-view");
    this.search = document.getElementById("search");
    this.searchInput = document.getElementById("search-id");
    this.seq = 0;
    this.search.addEventListener("submit", (e) => {
      e.preventDefault();
      const id = this.searchInput.value.trim().replace(/^#/, "");
      if (!/^\d+$/.test(id)) {
        toast("Type a numeric user or post id", "info");
        return;
      }
      go(`#/entity/${id}`);
    });
    document.getElementById("random-user").addEventListener("click", () => this.randomUser());
    window.addEventListener("hashchange", () => this.route());
    this.route();
  }

  async randomUser() {
    try {
      const { ids } = await api("api/random/user?count=1");
      if (!ids || !ids.length) {
        toast("There are no users yet. Start the bot or create one through the API.", "info");
        return;
      }
      go(`#/user/${ids[0]}`);
    } catch (e) {
      toastError("Random user", e);
    }
  }

  /** Renders whatever the hash points at; a later navigation wins over a slower earlier one. */
  async route() {
    const seq = ++this.seq;
    const current = () => seq === this.seq;
    const [, kind, id] = /^#\/(\w+)\/([^/]+)$/.exec(location.hash) || [];
    if (!kind) return this.home();
    this.searchInput.value = id;
    this.loading();
    try {
      if (kind === "user") await this.user(id, current);
      else if (kind === "post") await this.post(id, current);
      else if (kind === "entity") await this.entity(id, current);
      else this.home();
    } catch (e) {
      if (current()) this.failed(kind, id, e);
    }
  }

  home() {
    this.searchInput.value = "";
    setChildren(this.view, empty("Explore the social graph",
      "Open a random user, or type a user or post id above. Every person and post is a link.",
      h("button", { type: "button", class: "btn btn-primary", onclick: () => this.randomUser() }, "Open a random user")));
  }

  loading() {
    setChildren(this.view, h("div", { class: "skeleton", "aria-busy": "true", "aria-label": "Loading" },
      h("div", { class: "sk sk-avatar" }), h("div", { class: "sk sk-line w60" }), h("div", { class: "sk sk-line w40" }),
      h("div", { class: "sk sk-block" }), h("div", { class: "sk sk-block" })));
  }

  failed(kind, id, e) {
    if (e instanceof ApiError && e.status === 404) {
      const what = kind === "post" ? "post" : kind === "user" ? "user" : "entity";
      setChildren(this.view, empty(`No ${what} ${id}`, "It may have been deleted, or the id is mistyped.",
        h("button", { type: "button", class: "btn", onclick: () => this.randomUser() }, "Open a random user")));
      return;
    }
    setChildren(this.view, empty("Could not load this", e.message || String(e),
      h("button", { type: "button", class: "btn", onclick: () => this.route() }, "Try again")));
  }

  async entity(id, current) {
    const e = await api(`api/entities/${encodeURIComponent(id)}`);
    if (!current()) return;
    if (e.type === "user") return replace(`#/user/${e.id}`);
    if (e.type === "status") return replace(`#/post/${e.id}`);
    setChildren(this.view,
      h("div", { class: "entity-head" },
        h("span", { class: "type-badge" }, e.type),
        h("h3", {}, `${e.type} ${e.id}`),
        h("p", { class: "muted" }, `created ${ago(e.created)} · version ${e.version ?? 1}`)),
      attributesTable(e.attributes));
  }

  async user(id, current) {
    const t = await api(`api/timeline/${encodeURIComponent(id)}`);
    if (!current()) return;
    const user = t.user || { id, type: "user", attributes: {} };
    const posts = Array.isArray(t.posts) ? t.posts : [];
    const likes = Array.isArray(t.likes) ? t.likes : [];
    const friends = h("section", { class: "friends", hidden: true });
    setChildren(this.view,
      h("div", { class: "profile", dataset: { view: "user", id: user.id } },
        avatar(user, "lg"),
        h("div", { class: "profile-main" },
          h("h3", { class: "profile-name" }, nameOf(user)),
          h("p", { class: "muted" }, `user ${user.id}`, user.created ? [" · joined ", h("time", { title: fullTime(user.created) }, ago(user.created))] : null)),
        h("dl", { class: "profile-stats" },
          h("div", {}, h("dd", {}, count(posts.length)), h("dt", {}, "posts")),
          h("div", {}, h("dd", {}, count(likes.length)), h("dt", {}, "likes")))),
      friends,
      section("Posts", posts.length, "posts",
        posts.length ? paged(posts, (p) => ownPost(p)) : h("p", { class: "section-empty" }, `${nameOf(user)} has not posted anything yet.`)),
      section("Likes", likes.length, "likes",
        likes.length ? paged(likes, (l) => likedPost(l)) : h("p", { class: "section-empty" }, `${nameOf(user)} has not liked anything yet.`)));
    this.friends(user.id, friends, current);
  }

  /** Friends are not in the timeline: fetched after it, shown when there are any. */
  async friends(id, box, current) {
    try {
      const a = await api(`api/entities/${encodeURIComponent(id)}/associations/friend?limit=${CHIPS * 2}`);
      const ids = (a.items || []).map((i) => i.to);
      if (!ids.length || !current()) return;
      const people = await resolve(ids);
      if (!current()) return;
      setChildren(box,
        h("h4", { class: "section-title" }, "Friends ", h("span", { class: "count" }, count(a.count ?? ids.length))),
        h("div", { class: "chips" }, ids.map((fid) => person(people.get(String(fid)) || { id: fid }, "friend"))));
      box.hidden = false;
    } catch {
      // Friends are a bonus; the timeline is already shown.
    }
  }

  async post(id, current) {
    const enc = encodeURIComponent(id);
    const [e, by, liked] = await Promise.all([
      api(`api/entities/${enc}`),
      api(`api/entities/${enc}/associations/postedby?limit=${ASSOC_LIMIT}`).catch(() => ({ count: 0, items: [] })),
      api(`api/entities/${enc}/associations/likedby?limit=${ASSOC_LIMIT}`).catch(() => ({ count: 0, items: [] })),
    ]);
    if (!current()) return;
    if (e.type === "user") return replace(`#/user/${e.id}`);
    const authorIds = (by.items || []).map((i) => i.to);
    const likerIds = (liked.items || []).map((i) => i.to);
    const people = await resolve([...authorIds, ...likerIds]);
    if (!current()) return;
    const authors = authorIds.map((a) => people.get(String(a)) || { id: a });
    const likeCount = liked.count ?? likerIds.length;
    setChildren(this.view,
      h("article", { class: "post-view", dataset: { view: "post", id: e.id } },
        h("div", { class: "post-authors" },
          authors.length ? authors.map((a) => person(a, "author", "lg")) : h("span", { class: "muted" }, "author unknown")),
        h("blockquote", { class: "post-body" }, textOf(e)),
        h("p", { class: "post-view-meta" },
          `post ${e.id} · `,
          h("time", { title: fullTime(e.created) }, `posted ${ago(e.created)}`),
          e.version > 1 ? ` · edited ${ago(e.updated)}` : null),
        e.type !== "status" ? attributesTable(e.attributes) : null),
      section("Liked by", likeCount, "likers",
        likerIds.length
          ? h("div", { class: "chips" }, likerIds.map((l) => person(people.get(String(l)) || { id: l }, "liker")),
            likeCount > likerIds.length ? h("span", { class: "more" }, `and ${count(likeCount - likerIds.length)} more`) : null)
          : h("p", { class: "section-empty" }, "Nobody has liked this yet.")));
  }
}

function go(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

/** Swaps the current history entry (an id search that resolved to a user or post). */
function replace(hash) {
  history.replaceState(null, "", hash);
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}

/** Entities by id, in one request; missing ones are left out. */
async function resolve(ids) {
  const unique = [...new Set(ids.map(String))];
  const map = new Map();
  if (!unique.length) return map;
  try {
    const list = await api(`api/entities?ids=${unique.map(encodeURIComponent).join(",")}`);
    for (const e of Array.isArray(list) ? list : []) map.set(String(e.id), e);
  } catch (e) {
    toastError("Looking up names", e);
  }
  return map;
}

function nameOf(e) {
  const a = (e && e.attributes) || {};
  return a.name || a.username || a.handle || `user ${e.id}`;
}

function textOf(e) {
  const a = (e && e.attributes) || {};
  return a.text ?? a.body ?? `(post ${e.id} has no text)`;
}

function initials(name) {
  const parts = String(name).trim().split(/\s+/).filter(Boolean);
  if (!parts.length) return "?";
  const first = [...parts[0]][0] || "";
  const second = parts.length > 1 ? [...parts[parts.length - 1]][0] || "" : [...parts[0]][1] || "";
  return (first + second).toUpperCase();
}

function avatar(user, size = "sm") {
  const el = h("span", { class: `avatar avatar-${size}`, "aria-hidden": "true" }, initials(nameOf(user)));
  el.style.setProperty("--h", hue(user.id));
  return el;
}

/** A link to a person's timeline. */
function person(user, rel, size = "sm") {
  return h("a", { class: "person", href: `#/user/${user.id}`, dataset: { entity: user.id, rel }, title: `user ${user.id}` },
    avatar(user, size), h("span", { class: "person-name" }, nameOf(user)));
}

/** A link to a post. */
function postLink(status) {
  return h("a", { class: "post-text", href: `#/post/${status.id}`, dataset: { entity: status.id, rel: "post" } }, textOf(status));
}

function chips(people, rel, total, status) {
  const shown = people.slice(0, CHIPS);
  return h("div", { class: "chips" },
    shown.map((p) => person(p, rel)),
    total > shown.length ? h("a", { class: "more", href: `#/post/${status.id}`, dataset: { entity: status.id, rel: "post" } }, `+${count(total - shown.length)} more`) : null);
}

/** One of the user's own posts, with who liked it. */
function ownPost({ status, liked_by: likedBy = [] }) {
  return h("article", { class: "post", dataset: { status: status.id } },
    postLink(status),
    h("div", { class: "post-meta" },
      h("time", { title: fullTime(status.created) }, ago(status.created)),
      h("span", { class: "likes-count", title: "likes" }, "♥ ", count(likedBy.length))),
    likedBy.length ? h("div", { class: "post-people" }, h("span", { class: "label" }, "Liked by"), chips(likedBy, "liker", likedBy.length, status)) : null);
}

/** A post the user liked, with who posted it. */
function likedPost({ status, posted_by: postedBy = [] }) {
  return h("article", { class: "post post-liked", dataset: { status: status.id } },
    h("div", { class: "post-people" },
      postedBy.length ? chips(postedBy, "author", postedBy.length, status) : h("span", { class: "muted" }, "author unknown")),
    postLink(status),
    h("div", { class: "post-meta" }, h("time", { title: fullTime(status.created) }, `posted ${ago(status.created)}`)));
}

function section(title, total, name, body) {
  return h("section", { class: "graph-section", dataset: { section: name } },
    h("h4", { class: "section-title" }, title, " ", h("span", { class: "count" }, count(total))),
    body);
}

/** The first PAGE items, and a button for each next PAGE. */
function paged(items, render) {
  const list = h("div", { class: "post-list" });
  let shown = 0;
  const more = h("button", { type: "button", class: "btn btn-quiet show-more" });
  const next = () => {
    list.append(...items.slice(shown, shown + PAGE).map(render));
    shown = Math.min(items.length, shown + PAGE);
    more.hidden = shown >= items.length;
    more.textContent = `Show more (${count(items.length - shown)})`;
  };
  more.addEventListener("click", next);
  next();
  return [list, more];
}

function attributesTable(attrs) {
  const entries = Object.entries(attrs || {});
  if (!entries.length) return h("p", { class: "muted" }, "No attributes.");
  return h("table", { class: "attrs" },
    h("tbody", {}, entries.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, typeof v === "string" ? v : JSON.stringify(v))))));
}

function empty(title, text, action) {
  return h("div", { class: "empty" },
    h("img", { class: "empty-art", src: "graph-empty.svg", alt: "", width: 120, height: 84 }),
    h("h3", {}, title),
    h("p", {}, text),
    action || null);
}

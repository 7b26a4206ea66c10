// Syncbit scheduler page: polls /api/v1/status, /nodes and /datasets every
// POLL_MS and draws them. Every value is put in with textContent, never
// parsed as HTML. With --http-token-file the API answers 401 until the
// token is given; it is kept in sessionStorage (this tab only).
"use strict";

const POLL_MS = 2000;
const FETCH_TIMEOUT_MS = 8000;
const TOKEN_KEY = "syncbit-api-token";
const THEME_KEY = "syncbit-theme";
const SYMBOL = { ready: "✓", fetching: "↻", waiting: "…", offline: "○", error: "!", none: "–" };

const $ = (id) => document.getElementById(id);
let timer = null;
let last = new Map(); // "dataset\0node" -> {bytes, t}: for rates

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function bytes(n) {
  if (!Number.isFinite(n)) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + " " + u[i];
}
const rate = (bps) => bytes(bps) + "/s";
const short = (hex) => (hex ? hex.slice(0, 12) : "–");
const labels = (o) => Object.entries(o || {}).map(([k, v]) => k + "=" + v).join(", ");
function seconds(s) {
  if (s === null || s === undefined) return "never";
  if (s < 60) return s.toFixed(1) + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  return Math.floor(s / 3600) + " h ago";
}

// ---- token and theme ------------------------------------------------------

function token() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
}
function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) { /* storage off: the token lives until the page is left */ }
  memToken = t || null;
}
let memToken = null;

function applyTheme(t) {
  if (t === "light" || t === "dark") document.documentElement.dataset.theme = t;
  else delete document.documentElement.dataset.theme;
  $("theme").textContent = "Theme: " + (t || "auto");
}
function nextTheme() {
  const order = ["auto", "light", "dark"];
  let cur = "auto";
  try { cur = localStorage.getItem(THEME_KEY) || "auto"; } catch (e) { /* none */ }
  const t = order[(order.indexOf(cur) + 1) % order.length];
  try { localStorage.setItem(THEME_KEY, t); } catch (e) { /* none */ }
  applyTheme(t);
}

// ---- fetching -------------------------------------------------------------

class Unauthorized extends Error {}

async function get(path) {
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  const headers = { Accept: "application/json" };
  const tok = token() || memToken;
  if (tok) headers.Authorization = "Bearer " + tok;
  try {
    const r = await fetch(path, { headers, cache: "no-store", signal: ctl.signal,
                                  credentials: "omit", redirect: "error" });
    if (r.status === 401) throw new Unauthorized("the token was refused");
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return await r.json();
  } finally {
    clearTimeout(t);
  }
}

function showAuth(message) {
  $("view").hidden = true;
  $("auth").hidden = false;
  $("forget").hidden = true;
  $("auth-error").textContent = message || "";
  $("state").textContent = "API token required";
  $("state").classList.remove("stale");
  document.body.dataset.auth = "required";
  $("token").focus();
}

async function poll() {
  clearTimeout(timer);
  timer = null;
  try {
    const [status, nodes, datasets] = await Promise.all(
      [get("/api/v1/status"), get("/api/v1/nodes"), get("/api/v1/datasets")]);
    $("auth").hidden = true;
    $("view").hidden = false;
    $("forget").hidden = !(token() || memToken);
    document.body.dataset.auth = "ok";
    draw(status, nodes.nodes || [], datasets.datasets || []);
    const st = $("state");
    st.textContent = "Updated " + new Date().toLocaleTimeString();
    st.classList.remove("stale");
  } catch (e) {
    if (e instanceof Unauthorized) {
      const had = token() || memToken;
      setToken(null);
      showAuth(had ? "The scheduler refused this token." : "");
      return; // polling resumes when a token is given
    }
    const st = $("state");
    st.textContent = "Scheduler unreachable (" + (e.name === "AbortError" ? "timeout" : e.message) +
      "); retrying — figures below are stale";
    st.classList.add("stale");
  }
  timer = setTimeout(poll, POLL_MS);
}

// ---- drawing --------------------------------------------------------------

function cellState(ns) {
  if (ns.published) return "ready";
  if (ns.error) return "error";
  if (!ns.connected) return "offline";
  if (ns.blocks_have > 0) return "fetching";
  return "waiting";
}

function cell(ds, node, ns, now) {
  if (!ns) {
    return el("td", { class: "cell s-none", "data-dataset": ds.name, "data-node": node.name,
                      "data-state": "none" },
              el("span", { text: SYMBOL.none + " not assigned" }));
  }
  const state = cellState(ns);
  const pct = ns.blocks_total > 0 ? Math.floor((100 * ns.blocks_have) / ns.blocks_total)
                                  : (ns.published ? 100 : 0);
  const got = ns.bytes_from_origin + ns.bytes_from_peers;
  const key = ds.name + "\0" + node.name + "\0" + (ds.version || "");
  const prev = last.get(key);
  let bps = 0;
  if (prev && now > prev.t && got >= prev.bytes) bps = ((got - prev.bytes) * 1000) / (now - prev.t);
  last.set(key, { bytes: got, t: now });

  const bar = el("div", { class: "bar", role: "presentation" }, el("span"));
  bar.firstChild.style.width = pct + "%";
  const td = el("td", { class: "cell s-" + state, "data-dataset": ds.name,
                        "data-node": node.name, "data-state": state,
                        "data-percent": String(pct) },
    el("span", { class: "badge", text: SYMBOL[state] + " " + state }),
    el("span", { text: " " + pct + "%" }),
    bar,
    state === "fetching" ? el("span", { class: "line", text: rate(bps) }) : null,
    el("span", { class: "line",
                 text: "origin " + bytes(ns.bytes_from_origin) + " · peers " + bytes(ns.bytes_from_peers) }),
    ns.refetch && (ns.refetch.bad_peer || ns.refetch.no_peer)
      ? el("span", { class: "line muted",
                     text: "refetched: " + ns.refetch.bad_peer + " bad peer, " + ns.refetch.no_peer + " no peer" })
      : null,
    ns.error ? el("span", { class: "err", text: "error: " + ns.error }) : null);
  if (!ns.connected && state !== "offline")
    td.append(el("span", { class: "line muted", text: "node offline" }));
  return td;
}

function drawGrid(status, nodes) {
  const datasets = status.datasets || [];
  const thead = $("grid").tHead, tbody = $("grid").tBodies[0];
  const now = Date.now();
  const head = el("tr", {}, el("th", { scope: "col", text: "Node" }));
  for (const ds of datasets) {
    const ready = ds.nodes.filter((n) => n.published).length;
    const have = ds.nodes.reduce((a, n) => a + n.blocks_have, 0);
    const total = ds.nodes.reduce((a, n) => a + n.blocks_total, 0);
    const pct = total ? Math.floor((100 * have) / total) : 0;
    head.append(el("th", { scope: "col", "data-dataset": ds.name },
      ds.name,
      el("span", { class: "meta",
                   text: (ds.complete ? SYMBOL.ready + " complete" : pct + "%") + " · " +
                         ready + "/" + ds.nodes_assigned + " nodes ready" }),
      el("span", { class: "meta mono", text: "version " + short(ds.version) })));
  }
  thead.replaceChildren(head);
  const rows = [];
  for (const node of nodes) {
    const tr = el("tr", { "data-node": node.name },
      el("th", { scope: "row" }, node.name,
         el("span", { class: "meta",
                      text: node.connected ? "● connected" : SYMBOL.offline + " not connected" })));
    for (const ds of datasets) tr.append(cell(ds, node, ds.nodes.find((n) => n.node === node.name), now));
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
  const any = datasets.length > 0 && nodes.length > 0;
  $("grid").hidden = !any;
  $("grid-empty").hidden = any;
}

function td(text, cls) { return el("td", { class: cls || "", text: text }); }

function drawDatasets(status, datasets) {
  const byName = new Map((status.datasets || []).map((d) => [d.name, d]));
  const rows = datasets.map((d) => {
    const st = byName.get(d.name) || { totals: {}, plan: {}, nodes: [] };
    const ready = st.nodes.filter((n) => n.published).length;
    // d.complete: every block hash known (the nodes hash their shares).
    const state = d.error ? "error" : st.complete ? "ready" : d.version ? "fetching" : "waiting";
    const stateText = d.error ? SYMBOL.error + " " + d.error
      : st.complete ? SYMBOL.ready + " complete"
      : d.version ? SYMBOL.fetching + " distributing" : SYMBOL.waiting + " listing";
    return el("tr", { "data-dataset": d.name },
      el("th", { scope: "row", text: d.name }),
      td(stateText, (d.error ? "wrap " : "") + "s-" + state),
      td(d.source || "–", "wrap mono"),
      d.pulled ? td("pulled by " + ((d.pulled_by || []).join(", ") || "–"), "wrap")
               : td(labels(d.selector) || "every node"),
      el("td", { class: "mono", title: d.version || "", text: short(d.version) }),
      el("td", { class: "mono", title: d.manifest || "", text: short(d.manifest) }),
      td(String(d.files), "num"), td(bytes(d.bytes), "num"),
      td(d.blocks_known + " / " + d.blocks, "num"), td(bytes(d.block_size), "num"),
      td(ready + " / " + d.nodes_assigned + (d.nodes_connected < d.nodes_assigned
         ? " (" + d.nodes_connected + " connected)" : "")),
      td(st.plan && st.plan.stripe ? "stripe " + st.plan.stripe + (st.plan.reason ? ": " + st.plan.reason : "") : "–", "wrap"),
      td(bytes(st.totals.bytes_from_origin), "num"), td(bytes(st.totals.bytes_from_peers), "num"),
      td(st.totals.origin_copies !== undefined ? String(st.totals.origin_copies) : "–", "num"));
  });
  $("datasets").tBodies[0].replaceChildren(...rows);
}

function drawNodes(nodes) {
  const rows = nodes.map((n) => el("tr", { "data-node": n.name },
    el("th", { scope: "row", text: n.name }),
    td(n.connected ? "● connected, heard " + seconds(n.seconds_since_heartbeat)
                   : SYMBOL.offline + " not connected, last seen " + seconds(n.seconds_since_heartbeat),
       n.connected ? "s-ready" : "s-offline"),
    td(n.addr, "mono"), td(labels(n.labels) || "–", "wrap"), td(n.agent_version || "–"),
    td(bytes(n.disk_free), "num"), td(n.cache_size ? bytes(n.cache_size) : "no limit", "num"),
    td((n.datasets || []).join(", ") || "–", "wrap"),
    td(String(n.hashes_refused), "num" + (n.hashes_refused ? " s-error" : "")),
    el("td", { class: "mono", title: n.key || "", text: short(n.key) })));
  $("nodes").tBodies[0].replaceChildren(...rows);
}

function draw(status, nodes, datasets) {
  const nc = status.nodes || { total: 0, connected: 0 };
  $("summary").textContent = nc.connected + " of " + nc.total + " nodes connected · " +
    (status.datasets || []).length + " datasets · " + bytes(status.origin_bytes) +
    " read from origins, " + bytes(status.bytes_delivered) + " delivered · scheduler " +
    (status.scheduler_version || "?");
  drawGrid(status, nodes);
  drawDatasets(status, datasets);
  drawNodes(nodes);
}

// ---- start ----------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  let theme = null;
  try { theme = localStorage.getItem(THEME_KEY); } catch (e) { /* none */ }
  applyTheme(theme);
  $("theme").addEventListener("click", nextTheme);
  $("forget").addEventListener("click", () => {
    setToken(null);
    clearTimeout(timer);
    showAuth("");
  });
  $("auth-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token").value.trim();
    if (!t) return;
    setToken(t);
    $("token").value = "";
    $("auth-error").textContent = "";
    $("state").textContent = "Checking the token…";
    poll();
  });
  poll();
});

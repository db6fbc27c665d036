// provproxy console: plain JS, no framework, no build step. Every value from a record is put
// in the page with textContent, never as markup.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const records = new Map(); // id -> record, from the list and the live feed
  const selected = new Set();
  let feed = null;

  // ---- state kept in the page's URL fragment, so a filtered view can be shared ----
  const FILTERS = ["route", "status", "method", "session", "q"];
  function state() {
    return new URLSearchParams(location.hash.slice(1));
  }
  function setState(changes) {
    const s = state();
    for (const [k, v] of Object.entries(changes)) {
      if (v === null || v === undefined || v === "") s.delete(k);
      else s.set(k, v);
    }
    const hash = "#" + s.toString();
    if (hash !== location.hash) history.replaceState(null, "", hash);
    render();
  }

  // ---- the API; a 401 means the token is needed ----
  async function api(path, options) {
    const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
    if (response.status === 401) {
      showLogin();
      throw new Error("unauthorized");
    }
    return response;
  }

  function showLogin() {
    $("login").hidden = false;
    $("app").hidden = true;
    document.body.dataset.feed = "login";
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("token");
    const response = await fetch("/ui/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { Authorization: "Bearer " + input.value },
    });
    // The token leaves the page either way: only the HttpOnly cookie keeps it.
    input.value = "";
    if (response.status === 204) {
      $("login-error").hidden = true;
      start();
    } else {
      $("login-error").hidden = false;
    }
  });

  // ---- helpers that build elements from text ----
  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }
  function statusClass(status) {
    return status ? Math.floor(status / 100) + "xx" : "error";
  }
  function pathOf(url) {
    try {
      const u = new URL(url);
      return u.pathname + u.search;
    } catch (e) {
      return url;
    }
  }
  function shortKey(key) {
    if (!key) return "";
    const bare = key.replace(/^sha256:/, "");
    return bare.length > 10 ? bare.slice(0, 10) + "…" : bare;
  }
  function ms(value) {
    const v = value || 0;
    return v < 10 ? v.toFixed(1) : String(Math.round(v));
  }
  function time(started) {
    return (started || "").replace(/^.*T/, "").replace(/\.(\d{3})\d*Z$/, ".$1");
  }

  // What the proxy did, as badges: the reason this console exists.
  function badges(record) {
    const a = record.actions || {};
    const out = [];
    if (record.role === "login") out.push(["login", "login"]);
    if (record.role === "token") out.push(["token request", "token"]);
    // A session token fetch says whether it replaces a token the target refused.
    const sessionToken = record.role === "token_fetch";
    if (sessionToken) out.push([a.tokenRefused ? "token refetched" : "token fetched", "token"]);
    if (a.authInjected) out.push(["auth: " + a.authInjected, "auth"]);
    if (a.cookiesReplayed && a.cookiesReplayed.length) out.push(["cookies: " + a.cookiesReplayed.join(", "), "cookies"]);
    if (a.sessionOpened) out.push(["session opened", "session"]);
    if (a.relogin) out.push(["re-login", "relogin"]);
    if (a.replayed || record.role === "replay") {
      out.push([record.parent ? "replay of #" + record.parent : "replay", "replay", record.parent]);
    }
    if (a.challengeAfter && a.challengeAfter.length) out.push(["challenge rewritten", "challenge"]);
    if (a.tokenFetched && !sessionToken) out.push(["token fetched", "token"]);
    if (a.tokenRefused && !sessionToken) out.push(["token refused", "refused"]);
    if (a.authorizationNormalised) out.push(["Bearer Bearer fixed", "fixed"]);
    if (record.error) out.push(["error: " + record.error.kind, "error"]);
    return out;
  }

  // ---- filters ----
  function matches(record, s) {
    const route = s.get("route"), status = s.get("status"), method = s.get("method");
    const session = s.get("session"), q = (s.get("q") || "").toLowerCase();
    if (route && record.route !== route) return false;
    if (status) {
      const cls = statusClass(record.status);
      if (status === "error" ? record.status !== 0 : cls !== status && String(record.status) !== status) return false;
    }
    if (method && (record.method || "").toUpperCase() !== method.toUpperCase()) return false;
    if (session && record.session !== session) return false;
    if (q) {
      const texts = [record.url || ""];
      for (const key of ["request_headers", "response_headers"]) {
        for (const pair of record[key] || []) texts.push(pair[0], pair[1]);
      }
      if (!texts.some((t) => String(t).toLowerCase().includes(q))) return false;
    }
    return true;
  }

  function filterQuery() {
    const s = state();
    const q = new URLSearchParams();
    for (const name of FILTERS) if (s.get(name)) q.set(name, s.get(name));
    return q;
  }

  // ---- rendering ----
  function row(record) {
    const tr = el("tr", null, "row status-" + statusClass(record.status));
    tr.dataset.id = record.id;
    const pick = el("td");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = selected.has(record.id);
    box.title = "select for export or compare";
    box.addEventListener("click", (event) => {
      event.stopPropagation();
      if (box.checked) selected.add(record.id);
      else selected.delete(record.id);
      updateSelection();
    });
    pick.append(box);
    tr.append(pick, el("td", record.id), el("td", time(record.started)), el("td", record.route || ""),
      el("td", record.method), el("td", pathOf(record.url), "path"),
      el("td", record.status || "—", "status"), el("td", ms(record.total_ms)),
      el("td", shortKey(record.session), "session"));
    const what = el("td", null, "badges");
    for (const [text, kind, link] of badges(record)) {
      const badge = el("span", text, "badge badge-" + kind);
      if (link) {
        badge.classList.add("link");
        badge.addEventListener("click", (event) => {
          event.stopPropagation();
          setState({ id: link });
        });
      }
      what.append(badge);
    }
    tr.append(what);
    tr.addEventListener("click", () => setState({ id: record.id }));
    return tr;
  }

  function renderList() {
    const s = state();
    const body = $("rows");
    const shown = [...records.values()].filter((r) => matches(r, s)).sort((a, b) => b.id - a.id);
    body.replaceChildren(...shown.map(row));
    $("empty").hidden = shown.length > 0;
    const routes = new Set([...records.values()].map((r) => r.route).filter(Boolean));
    $("routes").replaceChildren(...[...routes].map((r) => { const o = el("option"); o.value = r; return o; }));
    for (const name of FILTERS) {
      const input = $("f-" + name);
      if (input && document.activeElement !== input) input.value = s.get(name) || "";
    }
    for (const tr of body.children) tr.classList.toggle("current", tr.dataset.id === s.get("id"));
  }

  function updateSelection() {
    $("export-selected").disabled = selected.size === 0;
    $("compare-selected").disabled = selected.size !== 2;
  }

  function headerTable(pairs) {
    const table = el("table", null, "headers");
    for (const [name, value] of pairs || []) {
      const tr = el("tr");
      tr.append(el("th", name), el("td", value));
      table.append(tr);
    }
    return table;
  }

  function bodyBlock(body) {
    if (!body) return el("p", "(no body)", "muted");
    if (body.omitted) return el("p", "body withheld: " + body.omitted, "muted");
    const text = body.text !== undefined ? body.text : "(binary, " + body.size + " bytes, base64 in the export)";
    const pre = el("pre", text + (body.truncated ? "\n… (truncated at the trace's max_body)" : ""));
    return pre;
  }

  let detailShown = null;
  async function renderDetail() {
    const id = state().get("id");
    const aside = $("detail");
    if (!id) {
      aside.hidden = true;
      detailShown = null;
      return;
    }
    if (detailShown === id) return;
    detailShown = id;
    const response = await api("/api/exchanges/" + encodeURIComponent(id));
    if (!response.ok) {
      aside.replaceChildren(el("p", "Exchange #" + id + " is no longer in the ring buffer.", "muted"));
      aside.hidden = false;
      return;
    }
    const detail = await response.json();
    const r = detail.record;
    const parts = [];
    const close = el("button", "×", "close");
    close.type = "button";
    close.addEventListener("click", () => setState({ id: null }));
    parts.push(close, el("h2", "#" + r.id + " " + r.method + " " + pathOf(r.url)));
    parts.push(el("p", (r.status || "no response") + " · " + (r.route || "no route") + " · " + r.role +
      " · session " + (r.session || "none"), "muted"));
    const what = el("p", null, "badges");
    for (const [text, kind] of badges(r)) what.append(el("span", text, "badge badge-" + kind));
    parts.push(what);
    if (detail.finding) {
      const f = detail.finding;
      const box = el("div", null, "finding");
      box.id = "finding";
      box.append(el("h3", "Finding: " + f.class.replace(/_/g, " ")));
      const list = el("ul");
      for (const line of f.evidence) list.append(el("li", line));
      box.append(list, el("p", "Fix: " + f.fix, "fix"));
      parts.push(box);
    }
    if (detail.recovery) {
      const rec = detail.recovery;
      const box = el("div", null, "recovery");
      box.append(el("h3", "Recovered: " + rec.cause.replace(/_/g, " ")));
      const list = el("ul");
      for (const line of rec.evidence) list.append(el("li", line));
      box.append(list);
      parts.push(box);
    }
    if (r.error) parts.push(el("p", "Error (" + r.error.side + "): " + r.error.kind + " — " + r.error.detail, "error"));
    if (detail.linked.length) {
      parts.push(el("h3", "Linked records"));
      const list = el("ul", null, "linked");
      for (const l of detail.linked) {
        const item = el("li", "#" + l.id + " " + l.role + " " + l.method + " " + pathOf(l.url) + " → " + (l.status || "no response"), "link");
        item.addEventListener("click", () => setState({ id: l.id }));
        list.append(item);
      }
      parts.push(list);
    }
    parts.push(el("h3", "Timings"));
    parts.push(el("p", "connect " + (r.connect_ms ?? "–") + " ms · first byte " + (r.first_byte_ms ?? "–") +
      " ms · total " + r.total_ms + " ms · started " + r.started, "muted"));
    parts.push(el("h3", "Request"), el("p", r.method + " " + r.url, "url"), headerTable(r.request_headers), bodyBlock(r.request_body));
    parts.push(el("h3", "Response"), headerTable(r.response_headers || []), bodyBlock(r.response_body));
    const actions = el("p", null, "actions");
    const curl = el("button", "Copy as curl");
    curl.type = "button";
    curl.addEventListener("click", async () => {
      const text = await (await api("/api/exchanges/" + r.id + "/curl")).text();
      const pre = el("pre", text, "curl");
      actions.after(pre);
      if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
    });
    const good = el("button", "Compare as good");
    good.type = "button";
    good.addEventListener("click", () => { $("good-id").value = r.id; setState({ view: "compare" }); });
    const bad = el("button", "Compare as bad");
    bad.type = "button";
    bad.addEventListener("click", () => { $("bad-id").value = r.id; setState({ view: "compare" }); });
    actions.append(curl, good, bad);
    parts.push(actions);
    aside.replaceChildren(...parts);
    aside.hidden = false;
  }

  async function renderSessions() {
    const list = await (await api("/sessions")).json();
    const out = [];
    if (!list.length) out.push(el("p", "No sessions open.", "muted"));
    for (const s of list) {
      const box = el("div", null, "session");
      box.append(el("h3", s.route + " · " + shortKey(s.key)));
      box.append(el("p", "opened " + s.created + " · last used " + s.last_used +
        (s.expires_at ? " · expires " + s.expires_at : "") + " · generation " + s.generation +
        " · cookies " + (s.cookies.join(", ") || "none"), "muted"));
      const drop = el("button", "Drop this session");
      drop.type = "button";
      drop.addEventListener("click", async () => {
        await api("/sessions/" + encodeURIComponent(s.route) + "/" + encodeURIComponent(s.key), { method: "DELETE" });
        renderSessions();
      });
      const filter = el("button", "Show its exchanges");
      filter.type = "button";
      filter.addEventListener("click", () => setState({ view: "exchanges", session: s.key }));
      box.append(drop, filter);
      const timeline = el("ol", null, "timeline");
      const own = [...records.values()].filter((r) => r.session === s.key).sort((a, b) => a.id - b.id);
      for (const r of own) {
        const item = el("li", time(r.started) + " #" + r.id + " " + r.method + " " + pathOf(r.url) + " → " + (r.status || "no response"),
          "status-" + statusClass(r.status));
        for (const [text, kind] of badges(r)) item.append(el("span", text, "badge badge-" + kind));
        item.addEventListener("click", () => setState({ view: "exchanges", id: r.id }));
        timeline.append(item);
      }
      box.append(timeline);
      out.push(box);
    }
    $("sessions").replaceChildren(...out);
  }

  // ---- compare ----
  async function compareSide(prefix) {
    const file = $(prefix + "-file").files[0];
    const entry = parseInt($(prefix + "-entry").value, 10);
    if (file) {
      const side = { har: await file.text() };
      if (entry > 0) side.entry = entry;
      return side;
    }
    return { id: parseInt($(prefix + "-id").value, 10) };
  }

  async function runCompare() {
    const body = JSON.stringify({ good: await compareSide("good"), bad: await compareSide("bad") });
    const response = await api("/api/compare", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
    });
    const result = await response.json();
    const out = $("compare-result");
    if (!response.ok) {
      out.replaceChildren(el("p", result.detail, "error"));
      return;
    }
    const sides = el("table", null, "sides");
    const head = el("tr");
    head.append(el("th"), el("th", "good (entry " + result.good.entry + ")"), el("th", "bad (entry " + result.bad.entry + ")"));
    sides.append(head);
    for (const [label, key] of [["method", "method"], ["URL", "url"], ["status", "status"], ["auth scheme", "auth_scheme"]]) {
      const tr = el("tr");
      const g = result.good[key], b = result.bad[key];
      tr.append(el("th", label), el("td", g ?? "none"), el("td", b ?? "none"));
      if (String(g) !== String(b)) tr.className = "differs";
      sides.append(tr);
    }
    const cookies = el("tr");
    cookies.append(el("th", "cookies"), el("td", result.good.cookies.join(", ") || "none"), el("td", result.bad.cookies.join(", ") || "none"));
    sides.append(cookies);
    const diffs = el("table", null, "differences");
    diffs.id = "differences";
    const dh = el("tr");
    dh.append(el("th", "difference"), el("th", "good"), el("th", "bad"), el("th", "why it may matter"));
    diffs.append(dh);
    for (const d of result.differences) {
      const tr = el("tr", null, "weight-" + d.weight);
      tr.append(el("td", d.what + (d.name ? " " + d.name : "")), el("td", d.good ?? "(absent)"),
        el("td", d.bad ?? "(absent)"), el("td", d.note));
      diffs.append(tr);
    }
    const summary = el("p", result.differences.length + " difference(s), most telling first", "muted");
    out.replaceChildren(sides, summary, diffs);
  }

  $("compare-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runCompare();
  });

  // ---- export ----
  async function exportHar(query) {
    const text = await (await api("/api/export.har?" + query.toString())).text();
    const link = el("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    link.download = "provproxy-console.har";
    link.click();
    URL.revokeObjectURL(link.href);
    return text;
  }
  $("export-filtered").addEventListener("click", () => exportHar(filterQuery()));
  $("export-selected").addEventListener("click", () => {
    const q = new URLSearchParams();
    q.set("ids", [...selected].join(","));
    exportHar(q);
  });
  $("compare-selected").addEventListener("click", () => {
    const [a, b] = [...selected].sort((x, y) => x - y);
    const ok = (id) => (records.get(id) || {}).status < 400 && (records.get(id) || {}).status > 0;
    // The one that worked is the good side, whichever came first.
    const [good, bad] = ok(b) && !ok(a) ? [b, a] : [a, b];
    $("good-id").value = good;
    $("bad-id").value = bad;
    $("good-file").value = "";
    $("bad-file").value = "";
    setState({ view: "compare" });
    runCompare();
  });

  // ---- filters in the form -> the URL ----
  for (const name of FILTERS) {
    const input = $("f-" + name);
    input.addEventListener("input", () => setState({ [name]: input.value.trim() }));
    input.addEventListener("change", () => setState({ [name]: input.value.trim() }));
  }
  $("filters").addEventListener("submit", (event) => event.preventDefault());

  function render() {
    const view = state().get("view") || "exchanges";
    for (const name of ["exchanges", "sessions", "compare"]) {
      $("view-" + name).hidden = name !== view;
      $("tab-" + name).classList.toggle("active", name === view);
    }
    if (view === "exchanges") {
      renderList();
      renderDetail();
    } else if (view === "sessions") {
      renderSessions();
    }
  }
  window.addEventListener("hashchange", render);
  for (const name of ["exchanges", "sessions", "compare"]) {
    $("tab-" + name).addEventListener("click", (event) => {
      event.preventDefault();
      setState({ view: name === "exchanges" ? null : name });
    });
  }

  // ---- the live feed ----
  function add(record) {
    records.set(record.id, record);
  }

  function openFeed() {
    if (feed) feed.close();
    feed = new EventSource("/api/feed");
    feed.addEventListener("open", async () => {
      document.body.dataset.feed = "open";
      $("feed-state").textContent = "live";
      // Opened first, then listed: nothing falls between the two.
      const response = await api("/api/exchanges?limit=1000");
      for (const record of await response.json()) add(record);
      render();
    });
    feed.addEventListener("message", (event) => {
      add(JSON.parse(event.data));
      if ((state().get("view") || "exchanges") === "exchanges") renderList();
    });
    feed.addEventListener("lagging", (event) => {
      const missed = JSON.parse(event.data).dropped;
      const note = $("lagging");
      note.textContent = "This page fell behind and missed " + missed + " record(s); reload to see them.";
      note.hidden = false;
    });
    feed.addEventListener("error", () => {
      document.body.dataset.feed = "closed";
      $("feed-state").textContent = "reconnecting…";
    });
  }

  async function start() {
    // One request to learn whether the token is needed before opening the stream.
    try {
      await api("/api/exchanges?limit=1");
    } catch (e) {
      return;
    }
    $("login").hidden = true;
    $("app").hidden = false;
    render();
    openFeed();
  }

  // For the page's own buttons and for tests driving it.
  window.provproxy = { exportHar: (query) => exportHar(new URLSearchParams(query || "")), records };
  start();
})();

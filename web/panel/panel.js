// The customer's panel: plain DOM, no library. Every text from the server or the customer is put
// in the page with textContent (el() below), never parsed as HTML. Long operations (verification,
// the DNS tester, certificate generation) answer with a job that this page polls.
"use strict";

const state = { session: null, domain: null, tab: null };

function $(id) { return document.getElementById(id); }

// el("p", {class: "x"}, "text", child...): attributes set one by one, children as text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function say(text, error) {
  const s = $("status");
  s.textContent = text || "";
  s.className = error ? "error" : "";
}

async function api(method, path, body) {
  const headers = {};
  const init = { method, headers, credentials: "same-origin" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    if (state.session && state.session.csrf) headers["X-CSRF-Token"] = state.session.csrf;
    init.body = JSON.stringify(body || {});
  }
  const r = await fetch("api/" + path, init);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (r.status === 401 && path !== "login") { showLogin(); }
  if (!r.ok) {
    const err = new Error((data && data.message) || ("the server answered " + r.status));
    err.status = r.status;
    // The panel answers every error with its JSON; anything else came from the server before
    // the panel was loaded (a restart: Prosody serves HTTP a moment before its modules load).
    err.fromPanel = data !== null;
    throw err;
  }
  return data;
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

// Polls a job until it ends; `progress` shows that it still runs. The job is kept in the server's
// store, so a poll the server cannot answer (it is restarting: no connection, 502 or 503, or an
// answer not from the panel) is tried again for a minute, and the page then shows the outcome:
// "interrupted" if the restart cut it short.
async function awaitJob(job, progress) {
  let unreachableSince = null;
  for (let i = 0; ; i++) {
    let j = null;
    try {
      j = await api("GET", "jobs/" + encodeURIComponent(job));
      unreachableSince = null;
    } catch (e) {
      if (e.status && e.fromPanel && e.status !== 502 && e.status !== 503) throw e;
      unreachableSince = unreachableSince || Date.now();
      if (Date.now() - unreachableSince > 60000) throw e;
    }
    if (j && j.state === "done") return j.result;
    // "failed", or "interrupted" (its message says to run it again).
    if (j && j.state !== "running") throw new Error(j.error && j.error.message ? j.error.message : "the check failed");
    if (progress) progress(i);
    await sleep(Math.min(250 + i * 100, 1500));
  }
}

function enc(domain) { return encodeURIComponent(domain); }

function when(ts) { return ts ? new Date(ts * 1000).toLocaleString() : "—"; }

function download(file) {
  const blob = new Blob([file.content], { type: file.type || "application/octet-stream" });
  const a = el("a", { href: URL.createObjectURL(blob), download: file.filename });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function copyButton(text, label) {
  return el("button", { type: "button", class: "secondary", "aria-label": label || "Copy", onclick: async (ev) => {
    try { await navigator.clipboard.writeText(text); ev.target.textContent = "Copied"; }
    catch (e) { say("Copy failed; select the text and copy it by hand.", true); }
  } }, "Copy");
}

function busy(button, on) { if (button) button.disabled = on; }

// ---- login and the domain list ----

function show(section) {
  for (const id of ["login", "domains", "domain"]) $(id).hidden = id !== section;
}

function showLogin() {
  state.session = null;
  $("who").hidden = true;
  show("login");
  $("login-jid").focus();
}

async function start() {
  try {
    const s = await api("GET", "session");
    if (!s.account) { showLogin(); return; }
    loggedIn(s);
  } catch (e) { say(e.message, true); }
}

function loggedIn(s) {
  state.session = s;
  $("who").hidden = false;
  $("who-account").textContent = s.account + (s.admin ? " (admin)" : "");
  route();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const button = $("login-submit");
  busy(button, true);
  try {
    const s = await api("POST", "login", { jid: $("login-jid").value, password: $("login-password").value });
    $("login-password").value = "";
    say("");
    loggedIn(s);
  } catch (e) { say(e.message, true); }
  finally { busy(button, false); }
});

$("logout").addEventListener("click", async () => {
  try { await api("POST", "logout"); } catch (e) { /* the session may be over already */ }
  location.hash = "#/";
  showLogin();
});

$("claim-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const r = await api("POST", "domains", { domain: $("claim-domain").value });
    $("claim-domain").value = "";
    location.hash = "#/d/" + enc(r.claim.domain) + "/status";
  } catch (e) { say(e.message, true); }
});

async function showDomains() {
  show("domains");
  const list = $("domain-list");
  list.replaceChildren();
  const r = await api("GET", "domains");
  if (!r.domains.length) list.append(el("li", {}, "No domain yet: add one below."));
  for (const d of r.domains) {
    list.append(el("li", {}, el("a", { href: "#/d/" + enc(d.domain) + "/status" }, d.domain), " — ", d.role,
      d.state ? " (" + d.state + ")" : ""));
  }
}

// ---- one domain ----

const TABS = [
  ["status", "Verification", ["admin", "owner", "claimant", "member"]],
  ["dns", "DNS tester", ["admin", "owner", "claimant"]],
  ["certificate", "Certificate", ["admin", "owner"]],
  ["settings", "Settings", ["admin", "owner"]],
  ["users", "Users", ["admin", "owner"]],
  ["invites", "Invites", ["admin", "owner"]],
  ["usage", "Usage", ["admin", "owner", "member"]],
  ["retention", "Retention", ["admin", "owner", "member"]],
];

async function showDomain(domain, tab) {
  show("domain");
  $("domain-name").textContent = domain;
  const page = $("page");
  page.replaceChildren(el("p", {}, "Loading…"));
  const info = await api("GET", "domains/" + enc(domain));
  const tabs = $("tabs");
  tabs.replaceChildren();
  for (const [id, label, roles] of TABS) {
    if (!roles.includes(info.role)) continue;
    tabs.append(el("li", {}, el("a", { href: "#/d/" + enc(domain) + "/" + id, "aria-current": id === tab ? "page" : null }, label)));
  }
  const render = PAGES[tab] || PAGES.status;
  page.replaceChildren();
  await render(page, domain, info);
}

function row(...cells) { return el("tr", {}, cells.map((c) => el("td", {}, c))); }
function head(...cells) { return el("thead", {}, el("tr", {}, cells.map((c) => el("th", { scope: "col" }, c)))); }
function table(headers, rows) { return el("div", { class: "table-wrap" }, el("table", {}, head(...headers), el("tbody", {}, rows))); }
function facts(pairs) { return el("dl", {}, pairs.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])); }

const PAGES = {
  async status(page, domain, info) {
    const summary = (i) => facts([
      ["Your role", i.role],
      ["Hosted here", i.hosted ? "yes" : "not yet"],
      ["Verification", i.claim ? i.claim.state : "no claim"],
      ["Last checked", i.claim ? when(i.claim.last_checked_at) : "—"],
    ]);
    let shown = summary(info);
    page.append(shown);
    if (!info.claim) return;
    const records = await api("GET", "domains/" + enc(domain) + "/records");
    const rows = [row(el("code", {}, records.name), "TXT", el("code", { id: "record-txt" }, records.txt), copyButton(records.txt, "Copy the TXT value"))];
    if (records.cname) rows.push(row(el("code", {}, records.name), "CNAME", el("code", {}, records.cname), copyButton(records.cname, "Copy the CNAME target")));
    page.append(el("h3", {}, "Records to create (either one)"), table(["Name", "Type", "Value", ""], rows));
    const result = el("div", { id: "verify-result", role: "status", "aria-live": "polite" });
    if (info.claim.finding) result.append(el("p", {}, "Last check found: ", info.claim.finding));
    const button = el("button", { type: "button", id: "verify-now", onclick: async () => {
      busy(button, true);
      result.replaceChildren(el("p", {}, "Checking DNS…"));
      try {
        const job = await api("POST", "domains/" + enc(domain) + "/verify");
        const claim = await awaitJob(job.job, (i) => { result.firstChild.textContent = "Checking DNS" + ".".repeat(1 + (i % 3)); });
        const ok = claim.state === "verified";
        result.replaceChildren(el("p", { class: ok ? "ok" : "bad", id: "verify-state" }, ok ? "Verified: " + domain + " is yours." : "Not verified (" + claim.state + ")."));
        if (!ok && claim.finding) result.append(el("p", {}, "Found instead: ", claim.finding));
        if (!ok && claim.last_error) result.append(el("p", {}, "DNS problem: ", claim.last_error));
        // The summary above says what the store says now, not what it said before the check.
        const fresh = summary(await api("GET", "domains/" + enc(domain)));
        shown.replaceWith(fresh);
        shown = fresh;
      } catch (e) { result.replaceChildren(el("p", { class: "bad" }, e.message)); }
      finally { busy(button, false); }
    } }, "Verify now");
    page.append(button, result);
  },

  async dns(page, domain) {
    const out = el("div", { id: "dns-result", role: "status", "aria-live": "polite" });
    const button = el("button", { type: "button", id: "dns-refresh", onclick: () => run() }, "Refresh");
    page.append(el("p", {}, "Checks every record your domain needs, as the world sees it."), button, out);
    async function run() {
      busy(button, true);
      out.replaceChildren(el("p", {}, "Testing…"));
      try {
        const job = await api("POST", "domains/" + enc(domain) + "/dns-test");
        const report = await awaitJob(job.job);
        const rows = report.rows.map((r) => row(el("code", {}, r.name), r.type, el("code", {}, r.expected),
          el("code", {}, (r.found || []).join(", ") || "nothing"),
          el("span", { class: r.status === "ok" ? "ok" : "bad" }, r.status + (r.problem ? " (" + r.problem + ")" : "")),
          r.dnssec || "—"));
        out.replaceChildren(table(["Name", "Type", "Expected", "Found", "Status", "DNSSEC"], rows));
        out.firstChild.querySelector("table").id = "dns-table";
      } catch (e) { out.replaceChildren(el("p", { class: "bad" }, e.message)); }
      finally { busy(button, false); }
    }
    run();
  },

  async certificate(page, domain) {
    const r = await api("GET", "domains/" + enc(domain) + "/certificate");
    const c = r.certificate;
    const box = el("div", { id: "cert-info" });
    if (c) {
      box.append(facts([
        ["Source", c.source], ["Key", c.key], ["Valid until", when(c.not_after)],
        ["Days left", String(c.days_left)], ["SHA-256", el("code", { id: "cert-fingerprint" }, c.fingerprint.sha256_hex)],
        ["Names", c.names.join(", ")],
      ]));
    } else box.append(el("p", {}, "No certificate yet."));
    const msg = el("div", { role: "status", "aria-live": "polite", id: "cert-message" });
    const gen = el("button", { type: "button", id: "cert-generate", onclick: async () => {
      busy(gen, true);
      msg.replaceChildren(el("p", {}, "Generating…"));
      try {
        const job = await api("POST", "domains/" + enc(domain) + "/certificate/generate", {});
        await awaitJob(job.job);
        route();
      } catch (e) { msg.replaceChildren(el("p", { class: "bad" }, e.message)); busy(gen, false); }
    } }, c ? "Generate a new self-signed certificate" : "Generate a self-signed certificate");
    const files = c ? [
      el("button", { type: "button", class: "secondary", id: "cert-posh", onclick: async () => {
        try { download(await api("GET", "domains/" + enc(domain) + "/certificate/posh")); } catch (e) { say(e.message, true); }
      } }, "Download the POSH file"),
      " ",
      el("button", { type: "button", class: "secondary", id: "cert-csr", onclick: async () => {
        try { download(await api("GET", "domains/" + enc(domain) + "/certificate/csr")); } catch (e) { say(e.message, true); }
      } }, "Download a CSR"),
    ] : [];
    const pem = el("textarea", { id: "cert-pem", spellcheck: "false" });
    const upload = el("form", { id: "cert-upload", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api("POST", "domains/" + enc(domain) + "/certificate/import", { pem: pem.value });
        msg.replaceChildren(el("p", { class: "ok" }, "Certificate imported."));
        route();
      } catch (e) { msg.replaceChildren(el("p", { class: "bad" }, "Refused: " + e.message)); }
    } }, el("label", { for: "cert-pem" }, "Upload a CA-signed certificate (PEM, with its chain; no key)"), pem,
      el("button", { type: "submit" }, "Upload"));
    page.append(box, gen, el("p", {}, files), upload, msg);
  },

  async settings(page, domain) {
    const r = await api("GET", "domains/" + enc(domain) + "/settings");
    const s = r.settings;
    const policy = el("select", { id: "set-policy" }, ["open", "invite", "closed"].map((p) =>
      el("option", { value: p, selected: s["registration.policy"] === p }, p)));
    const roster = el("input", { type: "checkbox", id: "set-shared-roster", checked: !!s["shared_roster"] });
    const msg = el("p", { role: "status", "aria-live": "polite" });
    const form = el("form", { onsubmit: async (ev) => {
      ev.preventDefault();
      const change = { "registration.policy": policy.value };
      if (s["shared_roster"] !== null && s["shared_roster"] !== undefined) change["shared_roster"] = roster.checked;
      try { await api("POST", "domains/" + enc(domain) + "/settings", change); msg.textContent = "Saved."; }
      catch (e) { msg.textContent = e.message; }
    } }, el("label", { for: "set-policy" }, "Who can register"), policy,
      s["shared_roster"] === null || s["shared_roster"] === undefined ? null :
        el("label", {}, roster, " Everyone is in everybody else's contact list"),
      el("button", { type: "submit", id: "set-save" }, "Save"));
    page.append(form, msg);
  },

  async invites(page, domain) {
    const list = el("div", { id: "invite-list" });
    const created = el("div", { role: "status", "aria-live": "polite", id: "invite-created" });
    const uses = el("input", { type: "number", id: "invite-uses", min: "1", value: "1" });
    const expiry = el("select", { id: "invite-expiry" }, [["86400", "1 day"], ["604800", "7 days"], ["2592000", "30 days"], ["never", "never"]].map(([v, t]) =>
      el("option", { value: v, selected: v === "604800" }, t)));
    async function refresh() {
      const r = await api("GET", "domains/" + enc(domain) + "/invites");
      const rows = r.invites.map((i) => row(String(i.id), i.status, String(i.uses_left) + "/" + String(i.uses_total), when(i.expires_at),
        i.status === "active" ? el("button", { type: "button", class: "secondary", onclick: async () => {
          try { await api("POST", "domains/" + enc(domain) + "/invites/" + i.id + "/revoke"); refresh(); } catch (e) { say(e.message, true); }
        } }, "Revoke") : ""));
      list.replaceChildren(rows.length ? table(["#", "Status", "Uses left", "Expires", ""], rows) : el("p", {}, "No invites."));
    }
    const form = el("form", { onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const r = await api("POST", "domains/" + enc(domain) + "/invites", { uses: Number(uses.value), expires_in: expiry.value === "never" ? "never" : Number(expiry.value) });
        const link = r.link || r.landing_url || r.uri;
        // The QR code is drawn by the server as SVG and shown as an image (never put in the page as markup).
        const qr = r.qr_svg
          ? el("img", { id: "invite-qr", class: "qr", width: "200", height: "200", alt: "QR code of the invite link",
            src: "data:image/svg+xml;base64," + btoa(r.qr_svg) })
          : el("p", { class: "bad" }, r.qr_error || "No QR code for this link.");
        created.replaceChildren(el("p", {}, "New invite (shown once): "),
          el("div", { class: "invite-new" }, qr, el("div", {}, el("code", { id: "invite-link" }, link), copyButton(link, "Copy the invite link"))));
        refresh();
      } catch (e) { created.replaceChildren(el("p", { class: "bad" }, e.message)); }
    } }, el("label", { for: "invite-uses" }, "Accounts it may create"), uses,
      el("label", { for: "invite-expiry" }, "Expires after"), expiry, el("button", { type: "submit", id: "invite-create" }, "Create invite"));
    page.append(form, created, list);
    refresh();
  },

  async users(page, domain) {
    const msg = el("div", { role: "status", "aria-live": "polite", id: "users-message" });
    const list = el("div", { id: "user-list" });
    const done = (text) => msg.replaceChildren(el("p", { class: "ok" }, text));
    const failed = (e) => msg.replaceChildren(el("p", { class: "bad" }, e.message));
    const base = "domains/" + enc(domain) + "/users";
    async function refresh() {
      const r = await api("GET", base);
      const rows = r.users.map((jid) => {
        const user = jid.slice(0, jid.lastIndexOf("@"));
        const isOwner = r.owner && r.owner.toLowerCase() === jid;
        const pw = el("input", { type: "password", autocomplete: "new-password", "aria-label": "New password for " + jid, "data-user": jid, class: "user-password" });
        const setPw = el("button", { type: "button", class: "secondary user-set-password", "data-user": jid, onclick: async () => {
          busy(setPw, true);
          try { const a = await api("POST", base + "/" + encodeURIComponent(user) + "/password", { password: pw.value }); pw.value = ""; done(a.done); }
          catch (e) { failed(e); } finally { busy(setPw, false); }
        } }, "Set password");
        // Deleting asks twice, on the same button (no dialog to dismiss at phone width).
        const del = isOwner ? "" : el("button", { type: "button", class: "secondary user-delete", "data-user": jid, onclick: async () => {
          if (del.dataset.armed !== "yes") { del.dataset.armed = "yes"; del.textContent = "Really delete " + jid + "?"; return; }
          busy(del, true);
          try { const a = await api("POST", base + "/" + encodeURIComponent(user) + "/delete"); done(a.done); refresh(); }
          catch (e) { failed(e); busy(del, false); }
        } }, "Delete");
        return el("li", { class: "user" }, el("p", {}, el("code", {}, jid), isOwner ? " (owner)" : ""),
          el("div", { class: "user-actions" }, pw, setPw, del));
      });
      list.replaceChildren(el("p", {}, r.text), el("ul", { class: "users" }, rows));
    }
    const name = el("input", { type: "text", id: "user-new-name", autocapitalize: "off", spellcheck: "false", autocomplete: "off", required: true });
    const password = el("input", { type: "password", id: "user-new-password", autocomplete: "new-password", required: true });
    const create = el("form", { id: "user-create-form", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const a = await api("POST", base, { username: name.value, password: password.value });
        name.value = ""; password.value = "";
        done(a.done);
        refresh();
      } catch (e) { failed(e); }
    } }, el("label", { for: "user-new-name" }, "New account's name (before @" + domain + ")"), name,
      el("label", { for: "user-new-password" }, "Its password"), password,
      el("button", { type: "submit", id: "user-create" }, "Create account"));
    page.append(create, msg, el("h3", {}, "Accounts"), list);
    try { await refresh(); } catch (e) { list.replaceChildren(el("p", { class: "bad" }, e.message)); }
  },

  async usage(page, domain) {
    const r = await api("GET", "domains/" + enc(domain) + "/usage");
    const rows = r.rows.map((l) => row(l.label, el("span", { class: "usage-text" }, l.text),
      l.percent === null ? "" : el("progress", { max: "100", value: String(l.percent), "aria-label": l.label + ": " + l.text })));
    page.append(el("p", {}, r.uploads.user ? "Your uploads (" + r.scope + ")" : "Uploads of the whole domain"),
      el("div", { id: "usage" }, table(["", "Used", ""], rows)),
      facts([["Largest file", r.largest_file]].concat(r.in_progress ? [["Held by uploads in progress", r.in_progress]] : [])));
    if (r.each_user) {
      const e = r.each_user;
      const limit = (v) => v || "no limit";
      page.append(el("h3", {}, "Each user, unless given an exception"),
        facts([["Stored", limit(e.storage)], ["24 hours", limit(e.daily)], ["7 days", limit(e.weekly)], ["30 days", limit(e.monthly)]]));
    }
  },

  async retention(page, domain) {
    const r = await api("GET", "domains/" + enc(domain) + "/retention");
    page.append(el("p", {}, "How long " + domain + " keeps each kind of data (\u201cnever\u201d: it is not deleted)."),
      el("div", { id: "retention-table" }, table(["", "Kept for"], r.rows.map((x) => row(x.label, x.period)))));
    if (r.own_archive === undefined) return;
    const current = el("p", { id: "retention-own-now" }, "Your own message archive is kept for: " + r.own_archive);
    const own = el("input", { type: "text", id: "retention-own", value: r.own_archive, spellcheck: "false", autocapitalize: "off" });
    const msg = el("p", { role: "status", "aria-live": "polite", id: "retention-message" });
    const save = async (archive) => {
      try {
        const a = await api("POST", "domains/" + enc(domain) + "/retention", { archive });
        current.textContent = "Your own message archive is kept for: " + a.own_archive;
        own.value = a.own_archive;
        msg.textContent = "Saved.";
      } catch (e) { msg.textContent = e.message; }
    };
    page.append(el("h3", {}, "Your own archive"), current, el("form", { onsubmit: (ev) => { ev.preventDefault(); save(own.value); } },
      el("label", { for: "retention-own" }, "Keep my own message archive for (at most " + r.domain_archive + "; e.g. 30d, 1w)"), own,
      el("button", { type: "submit", id: "retention-save" }, "Save"), " ",
      el("button", { type: "button", class: "secondary", id: "retention-reset", onclick: () => save(null) }, "Use the domain's")), msg);
  },
};

// ---- navigation: #/ (domains) and #/d/<domain>/<tab> ----

async function route() {
  if (!state.session) return;
  say("");
  const m = location.hash.match(/^#\/d\/([^/]+)\/([a-z]+)$/);
  try {
    if (m) await showDomain(decodeURIComponent(m[1]), m[2]);
    else await showDomains();
  } catch (e) { if (e.status !== 401) say(e.message, true); }
}

window.addEventListener("hashchange", route);
start();

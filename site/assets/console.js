// The Rewind console's script (no framework, no third-party code): runs actions through the
// site's /v1 API with the session's CSRF token, and keeps pages live by following the site's
// server-sent events (/v1/events/follow). Text from the server goes in with textContent only.
"use strict";

const csrf = () => document.body.dataset.csrf || "";

async function api(method, url, body) {
  const opts = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(url, opts);
  let json = null;
  try { json = await r.json(); } catch (_) { /* not JSON */ }
  return { status: r.status, ok: r.ok, json };
}

function say(text, failed) {
  const el = document.getElementById("result");
  if (!el) return;
  el.textContent = text;
  el.className = failed ? "failed" : "";
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = String(text);
  return e;
}

// --- Jobs followed live -------------------------------------------------------------------

function jobPanel(id) {
  const box = document.getElementById("live-jobs") || document.getElementById("result");
  let p = document.querySelector(`.job[data-job="${id}"]`);
  if (!p && box) {
    p = el("div", { class: "job running", "data-job": String(id) });
    p.append(el("span", {}, `Job ${id}: `), el("span", { class: "state" }, "running"), " ",
      el("progress", { max: "1", value: "0" }), " ", el("span", { class: "count" }, ""),
      " ", el("span", { class: "detail" }, ""), " ", el("a", { href: "/console/jobs" }, "all jobs"));
    box.append(p);
  }
  return p;
}

function showJob(j) {
  document.querySelectorAll(`[data-job="${j.id}"]`).forEach((row) => {
    row.classList.remove("running", "done", "failed");
    row.classList.add(j.state);
    const set = (sel, t) => { const e = row.querySelector(sel); if (e) e.textContent = t; };
    set(".state", j.state);
    set(".count", `${j.done} / ${j.total}`);
    set(".detail", j.detail || "");
    const pr = row.querySelector("progress");
    if (pr) { pr.max = Math.max(1, j.total); pr.value = Math.min(j.done, Math.max(1, j.total)); }
  });
}

async function refreshJobs() {
  if (!document.querySelector("[data-job]")) return;
  const r = await api("GET", "/v1/jobs?limit=200");
  if (r.ok && Array.isArray(r.json)) r.json.forEach(showJob);
}

// --- Live sections ------------------------------------------------------------------------

let pending = null;
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    await refreshLive();
  }, 400);
}

// Replace every [data-live] section by its fresh copy from the server (forms are outside them,
// so nothing being typed is lost).
async function refreshLive() {
  if (!document.querySelector("[data-live]")) return;
  const r = await fetch(location.href, { credentials: "same-origin" });
  if (!r.ok || r.redirected) return;
  const doc = new DOMParser().parseFromString(await r.text(), "text/html");
  document.querySelectorAll("[data-live][id]").forEach((old) => {
    const fresh = doc.getElementById(old.id);
    if (fresh) old.replaceWith(document.importNode(fresh, true));
  });
  await refreshJobs();
}

function follow() {
  if (!csrf()) return; // the login page
  const es = new EventSource("/v1/events/follow");
  es.onmessage = (m) => {
    let ev = {};
    try { ev = JSON.parse(m.data); } catch (_) { return; }
    document.body.dataset.lastEvent = String(ev.id || "");
    if (String(ev.kind || "").startsWith("job")) refreshJobs();
    refreshSoon();
    if (document.querySelector("[data-plans]") && String(ev.kind || "").startsWith("job")) loadRuns();
  };
  // The RPO bound grows with time, not only with events: the charts' resolution.
  setInterval(refreshLive, 10000);
}

// --- Actions ------------------------------------------------------------------------------

async function act(method, url, body) {
  const r = await api(method, url, body);
  if (!r.ok) {
    say(`${method} ${url}: HTTP ${r.status}: ${(r.json && r.json.error) || "failed"}`, true);
    return r;
  }
  if (r.json && r.json.job !== undefined) {
    say(`Started job ${r.json.job}.`);
    jobPanel(r.json.job);
    refreshJobs();
  } else {
    say((r.json && (r.json.done || r.json.summary)) || "Done.");
  }
  refreshSoon();
  return r;
}

function wireForms() {
  document.querySelectorAll("form.act-form").forEach((f) => {
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      const data = new FormData(f);
      const want = f.dataset.confirm;
      if (want && data.get("confirm") !== want) {
        say(`Type ${want} to confirm.`, true);
        return;
      }
      const body = {};
      for (const [k, v] of data.entries()) if (k !== "confirm") body[k] = v;
      await act("POST", f.dataset.url, body);
    });
  });
  document.addEventListener("click", async (e) => {
    const b = e.target.closest("button.act");
    if (!b) return;
    e.preventDefault();
    let body = {};
    if (b.dataset.body) body = JSON.parse(b.dataset.body);
    await act(b.dataset.method || "POST", b.dataset.url, body);
  });
}

// --- Recovery plans -----------------------------------------------------------------------

async function loadPlans() {
  const box = document.querySelector("[data-plans]");
  if (!box) return;
  const r = await api("GET", "/v1/plans");
  box.replaceChildren();
  if (!r.ok) {
    box.append(el("p", { class: "error" }, `GET /v1/plans: HTTP ${r.status} ${(r.json && r.json.error) || ""}`));
    return;
  }
  const plans = Array.isArray(r.json) ? r.json : (r.json && r.json.plans) || [];
  if (!plans.length) { box.append(el("p", { class: "quiet" }, "No recovery plans.")); return; }
  const t = el("table", { id: "plan-list" });
  const head = el("tr");
  ["Plan", "Created by", "Definition", ""].forEach((h) => head.append(el("th", {}, h)));
  t.append(el("thead")); t.tHead.append(head);
  const tb = el("tbody"); t.append(tb);
  for (const p of plans) {
    const name = p.name;
    const tr = el("tr", { "data-plan": name });
    const def = el("details"); def.append(el("summary", {}, "TOML"), el("pre", {}, p.text || ""));
    const tdDef = el("td"); tdDef.append(def);
    tr.append(el("td", {}, name), el("td", {}, p.created_by || ""), tdDef);
    const td = el("td");
    if (box.dataset.act) {
      const run = el("button", { class: "act", "data-method": "POST", "data-url": `/v1/plans/${encodeURIComponent(name)}/run`, "data-body": JSON.stringify({ mode: "test" }) }, "Run in test mode");
      const clean = el("button", { class: "act", "data-method": "POST", "data-url": `/v1/plans/${encodeURIComponent(name)}/cleanup`, "data-body": "{}" }, "Clean up");
      td.append(run, " ", clean);
    }
    tr.append(td); tb.append(tr);
  }
  box.append(t);
  loadRuns();
}

async function loadRuns() {
  const box = document.getElementById("runs");
  if (!box) return;
  const names = [...document.querySelectorAll("[data-plan]")].map((r) => r.dataset.plan);
  const out = [];
  for (const n of names) {
    const r = await api("GET", `/v1/plans/${encodeURIComponent(n)}/runs`);
    const runs = r.ok ? (Array.isArray(r.json) ? r.json : (r.json && r.json.runs) || []) : [];
    for (const run of runs) {
      const d = el("div", { class: `run ${run.state}`, "data-run": String(run.id) });
      const rto = run.rto_ms >= 0 ? ` — RTO ${(run.rto_ms / 1000).toFixed(1)} s` : "";
      d.append(el("h3", {}, `${n} #${run.id}: ${run.mode} at ${run.point || "latest"}, ${run.state}${rto}`));
      if (run.detail) d.append(el("p", {}, run.detail));
      const ol = el("ol", { class: "steps" });
      for (const s of run.steps || []) {
        const end = s.ended_ms > 0 ? s.ended_ms : Date.now();
        const secs = ((end - s.started_ms) / 1000).toFixed(1);
        const what = s.machine || s.boot_group || "";
        ol.append(el("li", { class: s.outcome === "ok" ? "done" : s.outcome },
          `${s.kind} ${what} on ${s.target}: ${s.outcome}, ${secs} s ${s.message || ""}`));
      }
      d.append(ol); out.push(d);
    }
  }
  box.replaceChildren(...(out.length ? out : [el("p", { class: "quiet" }, "No runs yet.")]));
}

document.addEventListener("DOMContentLoaded", () => {
  wireForms();
  follow();
  loadPlans();
  refreshJobs();
});

// The vsm-mcp console: plain ES modules, no build step, no CDN. Every request goes to the
// gateway's own HTTP API (the same gate, scopes and audit as any client) with the API key the
// user enters (kept in sessionStorage for this tab only); without one the loopback anonymous
// principal applies.
import { buildForm } from "./schema_form.js";

const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem("vsm-key") || "", events: null, chat: [] };

function headers(extra = {}) {
  const h = { ...extra };
  if (state.key) h.authorization = `Bearer ${state.key}`;
  return h;
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: headers(options.headers) });
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { message: text }; }
  if (!res.ok) {
    const err = body?.error ?? body;
    throw new Error(typeof err === "string" ? err : err?.message || `${res.status} ${res.statusText}`);
  }
  return body;
}

function status(msg, bad = false) {
  const el = $("status");
  el.textContent = msg;
  el.className = bad ? "error" : "";
}

async function callTool(name, args) {
  return api(`/v1/tools/${encodeURIComponent(name)}/call`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ arguments: args }),
  });
}

// --- navigation -------------------------------------------------------------------------------
const pages = { tools: initTools, upstreams: showUpstreams, events: () => {}, chat: initChat, plans: showPlans };
function show() {
  const page = (location.hash || "#tools").slice(1);
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.dataset.page !== page;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  (pages[page] || (() => {}))();
}

// --- tools ------------------------------------------------------------------------------------
let searchTimer = null;
let searchSeq = 0;
function initTools() {
  if (!$("tool-list").dataset.loaded) searchTools("");
}

async function searchTools(q) {
  const mine = ++searchSeq;
  try {
    const body = await api(q ? `/v1/tools?q=${encodeURIComponent(q)}&limit=10` : "/v1/tools?limit=50");
    if (mine !== searchSeq) return; // a later keystroke already asked
    const list = $("tool-list");
    list.dataset.loaded = "1";
    list.replaceChildren();
    $("tool-nomatch").hidden = !body.no_match;
    for (const t of body.tools) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = t.name;
      b.onclick = () => openTool(t);
      const s = document.createElement("span");
      s.className = "score";
      s.textContent = (t.score !== undefined ? ` ${t.score.toFixed(2)} · ` : " · ") + (t.description || "").split("\n")[0];
      li.append(b, s);
      list.append(li);
    }
    status(`${body.tools.length}${body.total > body.tools.length ? ` of ${body.total}` : ""} tool(s)${q ? ` for “${q}”` : ""}`);
  } catch (err) {
    status(`tool search failed: ${err.message}`, true);
  }
}

function openTool(t) {
  $("tool-detail").hidden = false;
  $("tool-name").textContent = t.name;
  $("tool-desc").textContent = t.description || "";
  $("tool-schema").textContent = JSON.stringify(t.input_schema, null, 2);
  $("tool-result").replaceChildren();
  buildForm($("tool-form"), t.input_schema || { type: "object" }, async (args, problem) => {
    if (problem) { renderError($("tool-result"), problem); return; }
    status(`calling ${t.name}…`);
    try {
      const result = await callTool(t.name, args);
      renderResult($("tool-result"), result);
      status(result.isError ? `${t.name} failed` : `${t.name} answered`, !!result.isError);
    } catch (err) {
      renderError($("tool-result"), err.message);
      status(`${t.name}: ${err.message}`, true);
    }
  });
}

function renderError(el, message) {
  const p = document.createElement("p");
  p.className = "error";
  p.setAttribute("role", "alert");
  p.textContent = message;
  el.replaceChildren(p);
}

function renderResult(el, result) {
  el.replaceChildren();
  if (result.isError) {
    const p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = "The tool reported an error:";
    el.append(p);
  }
  for (const c of result.content || []) {
    if (c.type === "text") {
      const pre = document.createElement("pre");
      pre.className = result.isError ? "error" : "";
      pre.textContent = c.text;
      el.append(pre);
    } else if (c.type === "image") {
      const img = document.createElement("img");
      img.className = "result";
      img.alt = "image returned by the tool";
      img.src = `data:${c.mimeType};base64,${c.data}`;
      el.append(img);
    } else {
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(c, null, 2);
      el.append(pre);
    }
  }
  if (result.structuredContent !== undefined) {
    const d = document.createElement("details");
    d.open = true;
    const s = document.createElement("summary");
    s.textContent = "Structured result";
    const pre = document.createElement("pre");
    pre.textContent = JSON.stringify(result.structuredContent, null, 2);
    d.append(s, pre);
    el.append(d);
  }
}

// --- upstreams and audit ------------------------------------------------------------------------
async function showUpstreams() {
  try {
    const res = await fetch("/readyz", { headers: headers() });
    const body = await res.json();
    const ups = body.checks?.upstreams || body.upstreams || {};
    const rows = $("up-rows");
    rows.replaceChildren();
    for (const [name, u] of Object.entries(ups)) {
      const tr = document.createElement("tr");
      const detail = [u.error, u.circuit && u.circuit !== "closed" ? `circuit ${u.circuit}` : "", u.restarts ? `${u.restarts} restart(s)` : ""].filter(Boolean).join(" · ");
      for (const v of [name, u.state, String(u.tools ?? ""), detail]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      tr.children[1].className = u.ok ? "ok" : "error";
      rows.append(tr);
    }
  } catch (err) {
    status(`readiness failed: ${err.message}`, true);
  }
  await showAudit();
}

async function showAudit() {
  const params = new URLSearchParams({ limit: "50" });
  if ($("audit-tool").value) params.set("tool", $("audit-tool").value);
  if ($("audit-outcome").value) params.set("outcome", $("audit-outcome").value);
  const rows = $("audit-rows");
  rows.replaceChildren();
  try {
    const body = await api(`/v1/audit?${params}`);
    for (const e of body.episodes || body.items || []) {
      const tr = document.createElement("tr");
      for (const v of [e.created_at || e.time || "", e.tool || e.public_name || "", e.outcome || "", String(e.duration_ms ?? ""), e.error || ""]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      rows.append(tr);
    }
  } catch (err) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 5;
    td.className = "error";
    td.textContent = `audit: ${err.message}`;
    tr.append(td);
    rows.append(tr);
  }
}

// --- events (SSE over fetch, so the API key can be sent) ----------------------------------------
async function subscribe(topics, after) {
  stopEvents();
  const ctl = new AbortController();
  state.events = ctl;
  const params = new URLSearchParams({ topics });
  if (after) params.set("last_event_id", after);
  const list = $("ev-list");
  try {
    const res = await fetch(`/v1/events?${params}`, { headers: headers(), signal: ctl.signal });
    if (!res.ok) throw new Error((await res.json().catch(() => ({})))?.error?.message || `${res.status}`);
    status(`subscribed to ${topics}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const ev = {};
        for (const line of frame.split("\n")) {
          const i = line.indexOf(":");
          if (i > 0) ev[line.slice(0, i)] = (ev[line.slice(0, i)] || "") + line.slice(i + 1).trim();
        }
        if (!ev.event) continue; // heartbeat comments
        const li = document.createElement("li");
        li.dataset.id = ev.id || "";
        li.textContent = `${ev.id || ""}  ${ev.event}  ${ev.data || ""}`.slice(0, 600);
        list.prepend(li);
        while (list.children.length > 500) list.lastChild.remove();
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") status(`events: ${err.message}`, true);
  }
}

function stopEvents() {
  if (state.events) state.events.abort();
  state.events = null;
}

// --- chat: the model gets find_tools / call_tool (search mode) and the console runs the calls ----
const CHAT_TOOLS = [
  { type: "function", function: { name: "find_tools", description: "Search the gateway's tools by what you want to do; returns names, descriptions and input schemas.", parameters: { type: "object", properties: { query: { type: "string" }, limit: { type: "integer" } }, required: ["query"] } } },
  { type: "function", function: { name: "call_tool", description: "Call one gateway tool by its exact name with its arguments.", parameters: { type: "object", properties: { name: { type: "string" }, arguments: { type: "object" } }, required: ["name"] } } },
];

async function initChat() {
  const sel = $("chat-model");
  if (sel.options.length) return;
  try {
    const body = await api("/v1/models");
    for (const m of body.data || []) sel.append(new Option(m.id, m.id));
    if (!sel.options.length) status("no LLM model is configured (VSM_LLM_MODELS)", true);
  } catch (err) {
    status(`models: ${err.message}`, true);
  }
}

function chatLine(cls, text) {
  const li = document.createElement("li");
  li.className = cls;
  li.textContent = text;
  $("chat-log").append(li);
  return li;
}

async function runToolCall(call) {
  const args = JSON.parse(call.function.arguments || "{}");
  if (call.function.name === "find_tools") {
    const q = new URLSearchParams({ q: args.query || "", limit: String(args.limit || 5) });
    const body = await api(`/v1/tools?${q}`);
    return JSON.stringify({ tools: body.tools.map((t) => ({ name: t.name, description: t.description, input_schema: t.input_schema })), no_match: !!body.no_match });
  }
  if (call.function.name === "call_tool") {
    const r = await callTool(args.name, args.arguments || {});
    return JSON.stringify(r.structuredContent ?? (r.content || []).map((c) => c.text ?? c).join("\n"));
  }
  return JSON.stringify({ error: `unknown tool ${call.function.name}` });
}

async function sendChat(text) {
  state.chat.push({ role: "user", content: text });
  chatLine("user", `you: ${text}`);
  const model = $("chat-model").value;
  for (let turn = 0; turn < 6; turn++) {
    let answer;
    try {
      answer = await api("/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model, messages: state.chat, tools: CHAT_TOOLS }),
      });
    } catch (err) {
      chatLine("error", `error: ${err.message}`);
      return;
    }
    const msg = answer.choices?.[0]?.message || {};
    state.chat.push(msg);
    if (msg.content) chatLine("assistant", `${model}: ${msg.content}`);
    if (!msg.tool_calls?.length) return;
    for (const call of msg.tool_calls) {
      chatLine("tool", `→ ${call.function.name}(${call.function.arguments})`);
      let out;
      try { out = await runToolCall(call); } catch (err) { out = JSON.stringify({ error: err.message }); }
      chatLine("tool", `← ${out.slice(0, 800)}`);
      state.chat.push({ role: "tool", tool_call_id: call.id, content: out });
    }
  }
  chatLine("error", "stopped after 6 model turns");
}

// --- plans (through the planner's tools, when it is mounted) --------------------------------------
async function showPlans() {
  const el = $("plans");
  el.replaceChildren();
  try {
    const r = await callTool("planner__plan_list", {});
    const plans = r.structuredContent?.plans || [];
    if (!plans.length) { el.textContent = "No plans yet."; return; }
    const table = document.createElement("table");
    table.innerHTML = "<caption>Plans and their steps</caption><thead><tr><th scope='col'>plan</th><th scope='col'>state</th><th scope='col'>steps</th></tr></thead>";
    const tbody = document.createElement("tbody");
    for (const p of plans) {
      const st = await callTool("planner__plan_status", { plan_id: p.plan_id || p.id });
      const steps = (st.structuredContent?.steps || []).map((s) => `${s.id}: ${s.state}`).join(", ");
      const tr = document.createElement("tr");
      for (const v of [p.name || p.plan_id || p.id, st.structuredContent?.state || p.state, steps]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      tbody.append(tr);
    }
    table.append(tbody);
    el.append(table);
  } catch (err) {
    el.textContent = `plans: ${err.message}`;
  }
}

// --- wiring --------------------------------------------------------------------------------------
window.addEventListener("hashchange", show);
window.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = state.key;
  $("key-form").onsubmit = (ev) => {
    ev.preventDefault();
    state.key = $("api-key").value.trim();
    sessionStorage.setItem("vsm-key", state.key);
    status(state.key ? "key set for this tab" : "anonymous (loopback only)");
    $("tool-list").dataset.loaded = "";
    show();
  };
  $("tool-q").oninput = (ev) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => searchTools(ev.target.value.trim()), 120);
  };
  $("up-refresh").onclick = showUpstreams;
  $("audit-form").onsubmit = (ev) => { ev.preventDefault(); showAudit(); };
  $("ev-form").onsubmit = (ev) => { ev.preventDefault(); subscribe($("ev-topics").value || "#", $("ev-from").value.trim()); };
  $("ev-stop").onclick = () => { stopEvents(); status("events stopped"); };
  $("chat-form").onsubmit = (ev) => {
    ev.preventDefault();
    const text = $("chat-input").value.trim();
    if (text) { $("chat-input").value = ""; sendChat(text); }
  };
  $("plans-refresh").onclick = showPlans;
  show();
});

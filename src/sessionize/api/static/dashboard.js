/* sessionize dashboard: vanilla JS, charts as inline SVG, no dependencies.
 * Reads the public JSON API; live counters every 5 s, everything else every 30 s and on change. */
"use strict";

const LIVE_MS = 5000;
const FULL_MS = 30000;
const DAY = 86400000;
const $ = (id) => document.getElementById(id);
const NF = new Intl.NumberFormat("en-US");
const state = { kind: "entry", by: "entry_page", pagesCursor: null, convCursor: null, lastStart: null, firstStart: null, tz: null };

// ------------------------------------------------------------------ formatting

const num = (n) => (n === null || n === undefined ? "–" : NF.format(Math.round(n)));
const pct = (r, d = 1) => (r === null || r === undefined ? "–" : (r * 100).toFixed(d) + " %");
const money = (x) => (x === null || x === undefined ? "–" : NF.format(Math.round(x * 100) / 100));
function dur(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = ms / 1000;
  if (s < 1) return "0 s";
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) { const m = Math.floor(s / 60), r = Math.round(s % 60); return r ? `${m} min ${r} s` : `${m} min`; }
  if (s >= 172800) return `${NF.format(Math.floor(s / 86400))} d ${Math.round((s % 86400) / 3600)} h`;
  const h = Math.floor(s / 3600), m = Math.round((s % 3600) / 60);
  return m ? `${h} h ${m} min` : `${h} h`;
}
function rate(x) {
  if (x === null || x === undefined) return "–";
  return x >= 100 ? NF.format(Math.round(x)) : x.toFixed(x >= 10 ? 1 : 2);
}
function when(ms, withDate = true) {
  if (ms === null || ms === undefined) return "–";
  const opts = { timeZone: state.tz, hour: "2-digit", minute: "2-digit", hour12: false };
  if (withDate) Object.assign(opts, { year: "numeric", month: "short", day: "numeric" });
  try { return new Intl.DateTimeFormat("en-GB", opts).format(new Date(ms)); }
  catch (e) { return new Date(ms).toISOString(); }
}
function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// ------------------------------------------------------------------ data

async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail || `${path}: HTTP ${r.status}`);
  return body;
}
function showError(err) {
  const el = $("error");
  if (!err) { el.hidden = true; return; }
  el.textContent = String(err.message || err);
  el.hidden = false;
}
function rangeParams() {
  const sel = $("range").value;
  if (sel === "all" || state.lastStart === null) return "";
  const to = state.lastStart + 1;
  // the window ends at the newest session; it starts no earlier than the oldest one
  const from = Math.max(to - Number(sel) * DAY, state.firstStart ?? -Infinity);
  return `from=${from}&to=${to}`;
}
const withRange = (path) => { const r = rangeParams(); return r ? path + (path.includes("?") ? "&" : "?") + r : path; };

// ------------------------------------------------------------------ charts (SVG)

const SVG = "http://www.w3.org/2000/svg";
function svgEl(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}
/* bars: [{label, value, title}], line: optional [values] drawn over the bars (same scale). */
function barChart(el, bars, { line = null, lineTitle = "" } = {}) {
  const W = Math.max(el.clientWidth, 300), H = el.clientHeight || 220;
  const m = { l: 48, r: 10, t: 10, b: 34 };
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const total = bars.reduce((a, b) => a + b.value, 0);
  el.dataset.bars = String(bars.length);
  el.dataset.nonzero = String(bars.filter((b) => b.value > 0).length);
  el.dataset.total = String(total);
  if (!bars.length || total === 0) {
    svg.appendChild(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "no sessions in this range"));
    el.replaceChildren(svg);
    return;
  }
  const maxV = niceMax(Math.max(...bars.map((b) => b.value), ...(line || [0])));
  const iw = W - m.l - m.r, ih = H - m.t - m.b, bw = iw / bars.length;
  const y = (v) => m.t + ih - (v / maxV) * ih;
  for (let i = 0; i <= 4; i++) {
    const v = (maxV * i) / 4, yy = y(v);
    svg.appendChild(svgEl("line", { x1: m.l, x2: W - m.r, y1: yy, y2: yy, class: "axis" }));
    svg.appendChild(svgEl("text", { x: m.l - 6, y: yy + 4, "text-anchor": "end" }, NF.format(v)));
  }
  const every = Math.max(1, Math.ceil(bars.length / Math.floor(iw / 70)));
  bars.forEach((b, i) => {
    const x = m.l + i * bw, h = Math.max(0, m.t + ih - y(b.value));
    const rect = svgEl("rect", { x: x + bw * 0.1, y: m.t + ih - h, width: Math.max(1, bw * 0.8), height: h, class: "bar" });
    rect.dataset.value = String(b.value);
    rect.appendChild(svgEl("title", {}, b.title || `${b.label}: ${NF.format(b.value)}`));
    svg.appendChild(rect);
    if (i % every === 0) svg.appendChild(svgEl("text", { x: x + bw / 2, y: H - m.b + 16, "text-anchor": "middle" }, b.label));
  });
  if (line) {
    const pts = line.map((v, i) => `${m.l + i * bw + bw / 2},${y(v)}`);
    svg.appendChild(svgEl("polyline", { points: pts.join(" "), class: "users" }));
    line.forEach((v, i) => {
      const c = svgEl("circle", { cx: m.l + i * bw + bw / 2, cy: y(v), r: bars.length > 60 ? 1.5 : 3, class: "pt" });
      c.appendChild(svgEl("title", {}, `${bars[i].label}: ${NF.format(v)} ${lineTitle}`));
      svg.appendChild(c);
    });
    el.dataset.points = String(line.length);
  }
  el.replaceChildren(svg);
}

// ------------------------------------------------------------------ panels

async function refreshLive() {
  const live = await api("/live");
  state.lastStart = live.last_start_ms ?? state.lastStart;
  state.firstStart = live.first_start_ms ?? state.firstStart;
  $("c-active").textContent = num(live.active_sessions);
  $("c-inactive").textContent = `${num(live.sessions.inactive)} inactive · ${num(live.sessions.total)} stored`;
  $("c-eps").textContent = rate(live.events_per_second);
  $("c-counted").textContent = `${num(live.counted)} counted so far`;
  const rps = live.rejected_per_second;
  $("c-rps").textContent = rps ? rate(Object.values(rps).reduce((a, b) => a + b, 0)) : "–";
  const reasons = Object.entries(live.rejected).filter(([, n]) => n > 0);
  $("c-rejected").textContent = reasons.length
    ? reasons.map(([k, n]) => `${k} ${num(n)}` + (rps && rps[k] ? ` (${rate(rps[k])}/s)` : "")).join(" · ")
    : "none rejected";
  $("c-rejected").dataset.total = String(reasons.reduce((a, [, n]) => a + n, 0));
  const tbody = $("partitions").querySelector("tbody");
  tbody.replaceChildren(...live.partitions.map((p) => row([
    String(p.partition), when(p.stream_time_ms), p.lag_ms === null ? "–" : dur(p.lag_ms), when(p.updated_at_ms)])));
  const pulse = $("pulse");
  pulse.classList.add("on");
  setTimeout(() => pulse.classList.remove("on"), 400);
  $("updated").textContent = `updated ${new Date().toLocaleTimeString("en-GB")} · live every ${LIVE_MS / 1000} s`;
  return live;
}

function row(cells, html = false) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (html) td.innerHTML = c; else td.textContent = c;
    tr.appendChild(td);
  }
  return tr;
}

async function refreshSummary() {
  const s = await api(withRange("/stats/summary"));
  $("c-sessions").textContent = num(s.sessions);
  $("c-sessions").dataset.value = String(s.sessions);
  $("c-users").textContent = num(s.users);
  $("c-events").textContent = `${num(s.events)} events · ${s.events_per_session ? s.events_per_session.toFixed(2) : "–"} per session`;
  $("c-median").textContent = dur(s.median_duration_ms);
  $("c-mean").textContent = `mean ${dur(s.mean_duration_ms)}`;
  $("c-bounce").textContent = pct(s.bounce_rate);
  $("c-engaged").textContent = `engaged ${pct(s.engaged_rate)}`;
  $("c-conversion").textContent = pct(s.conversion_rate, 2);
  $("c-revenue").textContent = `revenue ${money(s.revenue)}`;
  $("c-range").textContent = s.from ? `${when(s.from_ms)} – ${when(s.to_ms)}` : "all data";
}

function chooseInterval() {
  const v = $("interval").value;
  if (v !== "auto") return v;
  return $("range").value === "1" || $("range").value === "7" ? "hour" : "day";
}

async function refreshTimeseries() {
  const interval = chooseInterval();
  let body;
  try {
    body = await api(withRange(`/analytics/timeseries?interval=${interval}&tz=${encodeURIComponent(state.tz)}`));
  } catch (e) {
    if (interval === "hour" && /too many/.test(e.message)) body = await api(withRange(`/analytics/timeseries?interval=day&tz=${encodeURIComponent(state.tz)}`));
    else throw e;
  }
  const hourly = body.interval === "hour";
  const label = (b) => hourly ? b.start.slice(11, 16) : b.start.slice(5, 10);
  barChart($("chart-timeseries"), body.buckets.map((b) => ({
    label: label(b), value: b.sessions,
    title: `${b.start}: ${NF.format(b.sessions)} sessions, ${NF.format(b.users)} users, bounce ${pct(b.bounce_rate)}, conversion ${pct(b.conversion_rate, 2)}`,
  })), { line: body.buckets.map((b) => b.users), lineTitle: "users" });
  $("ts-note").textContent = `per ${body.interval} in ${body.tz}`;
}

async function refreshHistograms() {
  const [length, events] = await Promise.all([
    api(withRange("/analytics/histogram?metric=duration")), api(withRange("/analytics/histogram?metric=events"))]);
  barChart($("chart-length"), length.bins.map((b) => ({
    label: b.hi === null ? `≥ ${dur(b.lo)}` : b.lo === 0 && b.hi === 1 ? "0 s" : `< ${dur(b.hi)}`, value: b.sessions,
    title: `${b.hi === null ? `${dur(b.lo)} or more` : `${dur(b.lo)} to ${dur(b.hi)}`}: ${NF.format(b.sessions)} sessions`,
  })));
  barChart($("chart-events"), events.bins.map((b) => ({
    // a session has at least one event: the first bin [0, n) holds 1 .. n-1
    label: eventsLabel(Math.max(b.lo, 1), b.hi), value: b.sessions,
    title: `${eventsLabel(Math.max(b.lo, 1), b.hi)} events: ${NF.format(b.sessions)} sessions`,
  })));
}

function eventsLabel(lo, hi) {
  if (hi === null) return `${lo}+`;
  return hi - lo <= 1 ? String(lo) : `${lo}–${hi - 1}`;
}

async function refreshFunnel() {
  const steps = $("funnel-steps").value;
  const out = $("funnel");
  const body = await api(withRange(`/analytics/funnel?steps=${encodeURIComponent(steps)}`));
  const first = body.steps[0].sessions || 1;
  out.replaceChildren(...body.steps.map((s) => {
    const div = document.createElement("div");
    div.className = "funnel-step";
    div.dataset.step = String(s.step);
    div.dataset.sessions = String(s.sessions);
    const meta = s.step === 1
      ? `<b>${pct(s.conversion_from_first)}</b> of ${num(body.sessions)} sessions`
      : `<b>${pct(s.conversion_from_previous)}</b> of previous · ${pct(s.conversion_from_first)} of first` +
        (s.median_ms_from_previous === null ? "" : ` · median <b>${dur(s.median_ms_from_previous)}</b> after`);
    div.innerHTML = `<div class="name">${s.step}. ${esc(s.type)}</div>
      <div class="track"><div class="fill" style="width:${(100 * s.sessions) / first}%"></div><span class="count">${num(s.sessions)}</span></div>
      <div class="meta">${meta}</div>`;
    return div;
  }));
  const note = document.createElement("div");
  note.className = "funnel-note";
  note.textContent = `overall ${pct(body.conversion, 2)} of sessions that reach step 1 reach the last step` +
    (body.truncated_paths ? ` · ${num(body.truncated_paths)} sessions have paths cut at the path cap (later steps not seen)` : "");
  out.appendChild(note);
}

function meterCell(value, share) {
  return `<span class="meter" style="width:${Math.round(60 * (share || 0))}px"></span>${num(value)}`;
}

async function refreshPages(append = false) {
  const cursor = append && state.pagesCursor ? `&cursor=${encodeURIComponent(state.pagesCursor)}` : "";
  const body = await api(withRange(`/analytics/top-pages?kind=${state.kind}&limit=10${cursor}`));
  const tbody = $("top-pages").querySelector("tbody");
  const rows = body.rows.map((r) => row([esc(r.page), meterCell(r.sessions, r.share), pct(r.share), pct(r.bounce_rate), pct(r.conversion_rate, 2)], true));
  if (!append && !rows.length) rows.push(row([`<span class="muted">no ${state.kind} pages in this range</span>`, "", "", "", ""], true));
  if (append) tbody.append(...rows); else tbody.replaceChildren(...rows);
  state.pagesCursor = body.next_cursor;
  $("pages-more").hidden = !body.next_cursor;
}

async function refreshConversion(append = false) {
  const cursor = append && state.convCursor ? `&cursor=${encodeURIComponent(state.convCursor)}` : "";
  const body = await api(withRange(`/analytics/conversion?by=${state.by}&limit=10${cursor}`));
  const tbody = $("conversion").querySelector("tbody");
  const rows = body.rows.map((r) => row([esc(r.value), num(r.sessions), num(r.converted), pct(r.conversion_rate, 2), money(r.revenue)], true));
  const none = body.without_value;
  if (!append && none.sessions) rows.push(row([`<span class="muted">(none)</span>`, num(none.sessions), num(none.converted), pct(none.conversion_rate, 2), money(none.revenue)], true));
  if (append) tbody.append(...rows); else tbody.replaceChildren(...rows);
  state.convCursor = body.next_cursor;
  $("conv-more").hidden = !body.next_cursor;
  $("conv-col").textContent = state.by.replace("_", " ");
}

async function lookupUser(key) {
  const out = $("user");
  if (!key) { out.replaceChildren(); return; }
  const body = await api(`/users/${encodeURIComponent(key)}/sessions?limit=50`);
  out.dataset.key = key;
  out.dataset.sessions = String(body.sessions.length);
  if (!body.sessions.length) { out.innerHTML = `<p class="muted">no sessions of user ${esc(key)}</p>`; return; }
  out.replaceChildren(...body.sessions.map((s) => {
    const div = document.createElement("div");
    div.className = "session";
    div.dataset.sessionId = s.session_id;
    const steps = s.path.map((t, i) => {
      const at = s.path_ms && s.path_ms.length === s.path.length ? `<i>+${dur(s.path_ms[i])}</i>` : "";
      return `<span class="step ${esc(t)}" data-type="${esc(t)}">${esc(t)}${at}</span>`;
    });
    if (s.path_truncated) steps.push(`<span class="step more">… ${num(s.event_count - s.path.length)} more</span>`);
    div.innerHTML = `<div class="head"><b>${when(s.start_ms)}</b><span>${dur(s.duration_ms)}</span>
      <span>${num(s.event_count)} events</span><span>${num(s.conversions)} purchases · ${money(s.revenue)}</span>
      <span class="badge ${s.status}">${s.status}</span>${s.entry_page ? `<span>enters at ${esc(s.entry_page)}</span>` : ""}
      <span class="sid">${esc(s.session_id)}</span></div><div class="path">${steps.join("")}</div>`;
    return div;
  }));
}

// ------------------------------------------------------------------ wiring

async function refreshAll() {
  try {
    if (state.lastStart === null) await refreshLive();
    await Promise.all([refreshSummary(), refreshTimeseries(), refreshHistograms(), refreshFunnel(), refreshPages(), refreshConversion()]);
    showError(null);
    document.body.dataset.loaded = "true";
  } catch (e) { showError(e); }
}

function tabs(id, attr, onPick) {
  $(id).addEventListener("click", (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    for (const x of $(id).querySelectorAll("button")) x.classList.toggle("on", x === b);
    onPick(b.dataset[attr]);
  });
}

function init() {
  const params = new URLSearchParams(location.search);
  state.tz = params.get("tz") || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  $("tz").value = state.tz;
  if (params.get("range")) $("range").value = params.get("range");
  const guard = (p) => p.catch(showError);
  $("range").addEventListener("change", refreshAll);
  $("interval").addEventListener("change", () => guard(refreshTimeseries()));
  $("tz").addEventListener("change", () => { state.tz = $("tz").value.trim() || "UTC"; refreshAll(); });
  $("controls").addEventListener("submit", (e) => e.preventDefault());
  $("funnel-form").addEventListener("submit", (e) => { e.preventDefault(); guard(refreshFunnel().then(() => showError(null))); });
  $("user-form").addEventListener("submit", (e) => { e.preventDefault(); guard(lookupUser($("user-key").value.trim())); });
  tabs("pages-tabs", "kind", (k) => { state.kind = k; guard(refreshPages()); });
  tabs("conv-tabs", "by", (b) => { state.by = b; guard(refreshConversion()); });
  $("pages-more").addEventListener("click", () => guard(refreshPages(true)));
  $("conv-more").addEventListener("click", () => guard(refreshConversion(true)));
  api("/health").then((h) => { $("store-name").textContent = h.store === "sqlite" ? `SQLite ${h.path}` : `PostgreSQL ${h.server || ""}`; }).catch(() => {});
  if (params.get("user")) { $("user-key").value = params.get("user"); guard(lookupUser(params.get("user"))); }
  refreshAll();
  setInterval(() => guard(refreshLive()), LIVE_MS);
  setInterval(refreshAll, FULL_MS);
  let resize;
  window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(refreshAll, 250); });
}

document.addEventListener("DOMContentLoaded", init);

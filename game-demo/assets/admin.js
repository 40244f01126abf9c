// The admin dashboard: joins /admin with the token (checked on the server) and shows
// what the server pushes every second.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const client = new Volley.Client("/volley", { transport: params.get("transport") || "auto" });
const admin = (window.admin = { client, ns: null, last: null, error: null, history: [], room: null });
client.onState((s) => {
  $("conn").textContent = s.state + (s.transport ? " · " + s.transport : "");
  $("conn").className = "badge" + (s.state === "connected" ? " online" : "");
});

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

// ---- Charts: the last 5 minutes, one sample per overview (every second). ----

const WINDOW_MS = 5 * 60 * 1000;
const COLORS = ["#4b6cff", "#ff9f43", "#2ed573", "#ff6b81", "#a29bfe", "#feca57"];
const ms = (v) => (v == null ? "–" : v.toFixed(1) + " ms");

// Keeps one sample per overview and drops those older than the window.
function record(o) {
  const now = Date.now();
  const by = (t) => o.sessions.filter((s) => s.transport === t).length;
  const r = o.rates;
  admin.history.push({
    t: now,
    websocket: by("websocket"),
    polling: by("polling"),
    detached: by(null),
    in: r ? r.inputs_per_sec + r.chat_per_sec : null,
    out: r ? r.frames_out_per_sec : null,
    deliveries: r ? r.deliveries_per_sec : null,
    lateness: Object.fromEntries(o.rooms.map((m) => [m.code, [m.lateness_p50_ms, m.lateness_p99_ms]])),
  });
  while (admin.history.length && admin.history[0].t < now - WINDOW_MS) admin.history.shift();
}

// Sizes the canvas to its box in device pixels and answers a 2D context in CSS pixels.
function surface(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 420, h = canvas.clientHeight || 170;
  if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
  if (canvas.height !== Math.round(h * dpr)) canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  g.font = "11px system-ui, sans-serif";
  return { g, w, h };
}

// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten.
function ceiling(max) {
  if (!(max > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  return [1, 2, 5, 10].map((k) => k * p).find((v) => v >= max);
}

// Frame, y grid with labels and a legend; answers the plot area.
function axes(g, w, h, top, legend) {
  const area = { x: 40, y: 16, w: w - 48, h: h - 36 };
  g.strokeStyle = "#25305a";
  g.fillStyle = "#9aa7d8";
  g.lineWidth = 1;
  g.setLineDash([]);
  for (let i = 0; i <= 4; i++) {
    const y = area.y + area.h - (area.h * i) / 4;
    g.beginPath(); g.moveTo(area.x, y); g.lineTo(area.x + area.w, y); g.stroke();
    const v = (top * i) / 4;
    g.fillText(String(+v.toPrecision(3)), 2, y + 4);
  }
  let x = area.x;
  for (const [label, color] of legend) {
    g.fillStyle = color; g.fillRect(x, 2, 10, 10);
    g.fillStyle = "#e8ecff"; g.fillText(label, x + 14, 11);
    x += 22 + g.measureText(label).width;
  }
  return area;
}

// Line chart over the window. `series`: [{ label, color, dash, values: [[t, v]…] }].
function plot(canvas, series) {
  const { g, w, h } = surface(canvas);
  const now = Date.now();
  const top = ceiling(Math.max(0, ...series.flatMap((s) => s.values.map((p) => p[1]))));
  const legend = series.filter((s) => s.label).map((s) => [s.label, s.color]);
  const a = axes(g, w, h, top, legend);
  g.fillStyle = "#9aa7d8";
  g.fillText("−5 min", a.x, h - 4);
  g.fillText("now", a.x + a.w - 20, h - 4);
  for (const s of series) {
    g.strokeStyle = s.color;
    g.lineWidth = 2;
    g.setLineDash(s.dash ? [4, 3] : []);
    g.beginPath();
    let drawing = false;
    for (const [t, v] of s.values) {
      if (v == null) { drawing = false; continue; }
      const x = a.x + a.w * (1 - (now - t) / WINDOW_MS);
      const y = a.y + a.h * (1 - v / top);
      if (drawing) g.lineTo(x, y); else g.moveTo(x, y);
      drawing = true;
    }
    g.stroke();
  }
  g.setLineDash([]);
}

// Bar chart of how many values fall in each of `bins` equal buckets.
function histogram(canvas, values, bins, unit) {
  const { g, w, h } = surface(canvas);
  const hi = ceiling(Math.max(0, ...values));
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor((v / hi) * bins))]++;
  const top = ceiling(Math.max(1, ...counts));
  const a = axes(g, w, h, top, [[values.length + " sessions measured", COLORS[0]]]);
  const bw = a.w / bins;
  g.fillStyle = COLORS[0];
  counts.forEach((c, i) => {
    const bh = (a.h * c) / top;
    g.fillRect(a.x + i * bw + 1, a.y + a.h - bh, bw - 2, bh);
  });
  g.fillStyle = "#9aa7d8";
  g.fillText("0", a.x, h - 4);
  g.fillText(hi + " " + unit, a.x + a.w - 40, h - 4);
}

function drawCharts(o) {
  const hist = admin.history;
  const line = (label, color, pick, dash) => ({ label, color, dash, values: hist.map((p) => [p.t, pick(p)]) });
  plot($("chart-sessions"), [
    line("websocket", COLORS[0], (p) => p.websocket),
    line("polling", COLORS[1], (p) => p.polling),
    line("detached", COLORS[3], (p) => p.detached),
  ]);
  plot($("chart-messages"), [line("in", COLORS[2], (p) => p.in), line("out", COLORS[0], (p) => p.out)]);
  plot($("chart-deliveries"), [line("deliveries", COLORS[4], (p) => p.deliveries)]);
  // A line per room for the 4 rooms latest at p99 now; p50 dashed in the same colour.
  const worst = [...o.rooms].sort((x, y) => y.lateness_p99_ms - x.lateness_p99_ms).slice(0, 4);
  plot($("chart-lateness"), worst.flatMap((r, i) => {
    const at = (k) => (p) => (p.lateness[r.code] ? p.lateness[r.code][k] : null);
    return [line("#" + r.code, COLORS[i], at(1)), line(null, COLORS[i], at(0), true)];
  }));
  histogram($("chart-rtt"), o.sessions.filter((s) => s.rtt_ms != null).map((s) => s.rtt_ms), 12, "ms");
  admin.drawn = (admin.drawn || 0) + 1;
}

// ---- A room's detail view: its players, from the same overview. ----

function showRoom(o) {
  const r = o.rooms.find((m) => m.id === admin.room);
  $("room").hidden = !r;
  if (!r) return;
  const players = o.sessions.filter((s) => s.room === r.id);
  $("roomtitle").textContent = "Room #" + r.code;
  $("roomsummary").textContent = r.players + " players" + (r.meta ? " (+" + r.meta.bots + " bots)" : "") +
    " · " + r.held + " seats held for reconnecting players · " + r.tick_rate + " Hz · lateness p50 " +
    ms(r.lateness_p50_ms) + ", p99 " + ms(r.lateness_p99_ms);
  const rows = $("roomplayers");
  rows.innerHTML = "";
  for (const s of players) {
    const tr = document.createElement("tr");
    const inputs = s.inputs_per_sec == null ? "–" : s.inputs_per_sec + "/s";
    tr.append(cell(s.id), cell(s.transport || "detached"), cell(ms(s.rtt_ms)), cell(inputs),
      cell(s.inputs_dropped == null ? "–" : s.inputs_dropped), cell(s.age_secs + " s"));
    rows.append(tr);
  }
}

function render(o) {
  admin.last = o;
  record(o);
  drawCharts(o);
  tables(o);
}

function tables(o) {
  const rates = o.rates;
  $("rates").textContent = rates
    ? "in " + rates.inputs_per_sec + " inputs/s · out " + rates.frames_out_per_sec + " frames/s · chat " + rates.chat_per_sec + "/s"
    : "";
  const sessions = $("sessions");
  sessions.innerHTML = "";
  for (const s of o.sessions) {
    const tr = document.createElement("tr");
    tr.dataset.sid = s.id;
    // In a cluster, the node the session lives on (first digits of its id).
    const id = s.node ? s.id + " @" + s.node.slice(0, 4) : s.id;
    tr.append(cell(id), cell(s.namespaces.join(" ")), cell(s.transport || "detached"), cell(ms(s.rtt_ms)), cell(s.room == null ? "–" : "#" + s.room_code), cell(s.age_secs + " s"));
    const actions = document.createElement("td");
    for (const [label, event] of [["drop connection", "drop"], ["kick", "kick"]]) {
      const b = document.createElement("button");
      b.className = "small secondary";
      b.textContent = label;
      b.onclick = () => admin.ns.emitWithAck(event, s.id);
      actions.append(b, " ");
    }
    tr.append(actions);
    sessions.append(tr);
  }
  const rooms = $("roomstable");
  rooms.innerHTML = "";
  for (const r of o.rooms) {
    const tr = document.createElement("tr");
    tr.dataset.room = r.id;
    tr.className = r.id === admin.room ? "selected" : "";
    tr.onclick = () => { admin.room = r.id; tables(admin.last); };
    tr.append(cell("#" + r.code), cell(r.players + (r.meta ? " (+" + r.meta.bots + " bots)" : "")), cell(r.held),
      cell(r.meta ? r.meta.best : 0));
    if (r.elsewhere) {
      // A room of another node of the cluster: its figures stay there.
      const td = cell("on another node");
      td.colSpan = 5;
      tr.append(td);
    } else {
      tr.append(cell(r.ticks), cell(r.skipped),
        cell(r.lateness_p50_ms.toFixed(2) + " / " + r.lateness_p99_ms.toFixed(2) + " ms"),
        cell(r.tick_p99_us + " µs"), cell(r.inputs_dropped));
    }
    rooms.append(tr);
  }
  showRoom(o);
}

async function open(token) {
  $("error").textContent = "";
  try {
    if (client.state === "idle") await client.connect();
    admin.ns = await client.join("/admin", { token });
  } catch (e) {
    admin.error = e.message;
    $("error").textContent = "Refused: " + e.message;
    return;
  }
  $("login").hidden = true;
  $("dash").hidden = false;
  admin.ns.on("overview", render);
  render(await admin.ns.emitWithAck("overview", null));
}

$("login").onsubmit = (e) => { e.preventDefault(); open($("token").value.trim()); };
if (params.get("token") !== null) { $("token").value = params.get("token"); open(params.get("token")); }

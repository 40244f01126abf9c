// The admin dashboard: joins /admin with the token (checked on the server) and shows
// what the server pushes every second.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const client = new Volley.Client("/volley", { transport: params.get("transport") || "auto" });
const admin = (window.admin = { client, ns: null, last: null, error: null });
client.onState((s) => {
  $("conn").textContent = s.state + (s.transport ? " · " + s.transport : "");
  $("conn").className = "badge" + (s.state === "connected" ? " online" : "");
});

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

function render(o) {
  admin.last = o;
  const rates = o.rates;
  $("rates").textContent = rates
    ? "in " + rates.inputs_per_sec + " inputs/s · out " + rates.frames_out_per_sec + " frames/s · chat " + rates.chat_per_sec + "/s"
    : "";
  const sessions = $("sessions");
  sessions.innerHTML = "";
  for (const s of o.sessions) {
    const tr = document.createElement("tr");
    tr.dataset.sid = s.id;
    tr.append(cell(s.id), cell(s.namespaces.join(" ")), cell(s.room == null ? "–" : "#" + s.room_code), cell(s.age_secs + " s"));
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
    tr.append(cell("#" + r.code), cell(r.players + (r.meta ? " (+" + r.meta.bots + " bots)" : "")), cell(r.held),
      cell(r.meta ? r.meta.best : 0), cell(r.ticks), cell(r.skipped),
      cell(r.lateness_p50_ms.toFixed(2) + " / " + r.lateness_p99_ms.toFixed(2) + " ms"),
      cell(r.tick_p99_us + " µs"), cell(r.inputs_dropped));
    rooms.append(tr);
  }
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

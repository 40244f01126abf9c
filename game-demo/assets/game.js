// Orb Arena's page: lobby, game view, chat, connection state. Everything the server
// sends arrives through the Volley browser client (volley.js).
"use strict";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const client = new Volley.Client("/volley", { transport: params.get("transport") || "auto" });
// Exposed for the end-to-end tests and the curious (open the console).
const demo = (window.demo = { client, me: null, room: null, code: null, view: null, frames: 0, errors: [], history: [], ready: false });

// ---- Connection state ------------------------------------------------------------
client.onState((s) => {
  const badge = $("conn");
  badge.className = "badge";
  if (s.state === "connected") {
    badge.textContent = "online · " + s.transport + (s.resumed ? " · resumed" : "");
    badge.classList.add(s.transport === "polling" ? "polling" : "online");
  } else if (s.state === "reconnecting") {
    badge.textContent = "reconnecting (attempt " + s.attempt + ")…";
    badge.classList.add("reconnecting");
  } else if (s.state === "session-lost") {
    badge.textContent = "session lost: " + (s.reason || "");
    showLobby("Your session ended (" + (s.reason || "expired") + "). Join again.");
  } else if (s.state === "fell-back") {
    badge.textContent = "WebSocket blocked: using long-polling…";
  } else if (s.state === "closed") {
    badge.textContent = "offline: " + (s.reason || "");
  }
  if (s.error) demo.errors.push(s.error);
  demo.connection = s;
  demo.history.push(s.state);
});

// ---- Lobby -----------------------------------------------------------------------
let game, chat;
function showLobby(message) {
  $("lobby").classList.remove("hidden");
  $("lobbyerror").textContent = message || "";
  demo.room = null;
  demo.code = null;
}
async function refreshRooms() {
  if (!game || $("lobby").classList.contains("hidden")) return;
  const rooms = await game.emitWithAck("list_games", "arena").catch(() => []);
  const body = $("rooms");
  body.innerHTML = "";
  if (!rooms.length) body.innerHTML = '<tr><td colspan="4">No rooms yet: quick play opens one.</td></tr>';
  for (const r of rooms) {
    const tr = document.createElement("tr");
    const meta = r.metadata || {};
    tr.innerHTML = "<td>#" + (meta.code || "") + "</td><td>" + r.players + "/" + r.max_players +
      (meta.bots ? " + " + meta.bots + " bots" : "") + "</td><td>" + (meta.best || 0) + "</td><td></td>";
    const button = document.createElement("button");
    button.className = "small";
    button.textContent = "Join";
    button.onclick = () => play({ type: "arena", room: r.id });
    tr.lastChild.appendChild(button);
    body.appendChild(tr);
  }
}
async function play(request) {
  const name = $("name").value.trim() || "player";
  localStorage.setItem("orb-name", name);
  request.options = Object.assign({ name }, request.options || {});
  const answer = await game.emitWithAck("join_game", request, 8000).catch((e) => ({ Err: e.message }));
  if (answer.Err) return ($("lobbyerror").textContent = answer.Err);
  demo.room = answer.Ok.room; // the opaque id; people see its code (the `room` event)
  $("lobby").classList.add("hidden");
  if (!chat) chat = await client.join("/chat", { name }).catch(() => null);
  if (chat) {
    chat.on("said", (m) => line(m.name + ": " + m.text));
    await chat.emitWithAck("join_room", demo.room).catch(() => null);
  }
  canvas.focus();
}
$("quick").onclick = () => play({ type: "arena" });
// A filter nobody else uses makes join-or-create open a fresh room.
$("create").onclick = () => play({ type: "arena", filters: { table: Math.random().toString(36).slice(2, 8) } });
// A code as people type it: any case, with or without "#", O for 0 and I or L for 1.
function normalCode(text) {
  return text.trim().toUpperCase().replace(/^#/, "").replace(/O/g, "0").replace(/[IL]/g, "1");
}
$("bycode").onsubmit = async (e) => {
  e.preventDefault();
  const code = normalCode($("code").value);
  const rooms = await game.emitWithAck("list_games", "arena").catch(() => []);
  const room = rooms.find((r) => r.metadata && r.metadata.code === code);
  if (!room) return ($("lobbyerror").textContent = "No room #" + code + " right now.");
  play({ type: "arena", room: room.id });
};
$("name").value = localStorage.getItem("orb-name") || "";
setInterval(refreshRooms, 2000);

// ---- Chat ------------------------------------------------------------------------
function line(text, kind) {
  const li = document.createElement("li");
  li.textContent = text;
  if (kind) li.className = kind;
  const list = $("messages");
  list.appendChild(li);
  while (list.children.length > 60) list.firstChild.remove();
  list.scrollTop = list.scrollHeight;
}
$("chatform").onsubmit = (e) => {
  e.preventDefault();
  const text = $("say").value.trim();
  if (text && chat) { try { chat.emit("say", text); } catch (err) { line("(not sent: " + err.message + ")", "news"); } }
  $("say").value = "";
  canvas.focus();
};

// ---- Controls: keys, touch -------------------------------------------------------
const keys = new Set();
let steer = { dx: 0, dy: 0 };
function sendSteer(dash) {
  if (!game || !demo.room) return;
  try { game.emit("input", { dx: steer.dx, dy: steer.dy, dash: !!dash }); } catch (_) { /* buffer full while offline */ }
}
function fromKeys() {
  const dx = (keys.has("d") || keys.has("arrowright") ? 1 : 0) - (keys.has("a") || keys.has("arrowleft") ? 1 : 0);
  const dy = (keys.has("s") || keys.has("arrowdown") ? 1 : 0) - (keys.has("w") || keys.has("arrowup") ? 1 : 0);
  if (dx !== steer.dx || dy !== steer.dy) { steer = { dx, dy }; sendSteer(false); }
}
window.addEventListener("keydown", (e) => {
  if (document.activeElement === $("say") || document.activeElement === $("name")) return;
  const k = e.key.toLowerCase();
  if (k === " ") { sendSteer(true); e.preventDefault(); return; }
  keys.add(k);
  fromKeys();
});
window.addEventListener("keyup", (e) => { keys.delete(e.key.toLowerCase()); fromKeys(); });
const canvas = $("arena");
canvas.tabIndex = 0;
let lastTap = 0;
function touchSteer(t) {
  const rect = canvas.getBoundingClientRect();
  const dx = t.clientX - rect.left - rect.width / 2, dy = t.clientY - rect.top - rect.height / 2;
  const len = Math.max(40, Math.hypot(dx, dy));
  steer = { dx: dx / len, dy: dy / len };
  sendSteer(false);
}
canvas.addEventListener("touchstart", (e) => {
  const now = Date.now();
  if (now - lastTap < 300) sendSteer(true);
  lastTap = now;
  touchSteer(e.touches[0]);
  e.preventDefault();
}, { passive: false });
canvas.addEventListener("touchmove", (e) => { touchSteer(e.touches[0]); e.preventDefault(); }, { passive: false });
canvas.addEventListener("touchend", () => { steer = { dx: 0, dy: 0 }; sendSteer(false); });

// ---- Drawing ---------------------------------------------------------------------
const ctx = canvas.getContext("2d");
function hue(id) { return (id * 47) % 360; }
function draw() {
  requestAnimationFrame(draw);
  const w = (canvas.width = canvas.clientWidth * devicePixelRatio);
  const h = (canvas.height = canvas.clientHeight * devicePixelRatio);
  ctx.setTransform(devicePixelRatio, 0, 0, devicePixelRatio, 0, 0);
  const view = demo.view;
  ctx.fillStyle = "#0b1020";
  ctx.fillRect(0, 0, w, h);
  if (!view) return;
  const me = view.cells.find((c) => c.id === demo.me);
  const cx = me ? me.x : view.world[0] / 2, cy = me ? me.y : view.world[1] / 2;
  const ox = canvas.clientWidth / 2 - cx, oy = canvas.clientHeight / 2 - cy;
  // Grid and walls.
  ctx.strokeStyle = "#18214a";
  ctx.lineWidth = 1;
  for (let x = 0; x <= view.world[0]; x += 100) { ctx.beginPath(); ctx.moveTo(x + ox, oy); ctx.lineTo(x + ox, view.world[1] + oy); ctx.stroke(); }
  for (let y = 0; y <= view.world[1]; y += 100) { ctx.beginPath(); ctx.moveTo(ox, y + oy); ctx.lineTo(view.world[0] + ox, y + oy); ctx.stroke(); }
  ctx.strokeStyle = "#4b6cff";
  ctx.lineWidth = 4;
  ctx.strokeRect(ox, oy, view.world[0], view.world[1]);
  // Orbs.
  for (const [x, y] of view.orbs) {
    ctx.fillStyle = "hsl(" + ((x + y) % 360) + ",90%,65%)";
    ctx.beginPath(); ctx.arc(x + ox, y + oy, 5, 0, Math.PI * 2); ctx.fill();
  }
  // Cells, smaller on top.
  for (const c of [...view.cells].sort((a, b) => b.r - a.r)) {
    ctx.fillStyle = c.bot ? "hsl(" + hue(c.id) + ",15%,55%)" : "hsl(" + hue(c.id) + ",75%,58%)";
    ctx.beginPath(); ctx.arc(c.x + ox, c.y + oy, c.r, 0, Math.PI * 2); ctx.fill();
    if (c.id === demo.me) { ctx.strokeStyle = "#fff"; ctx.lineWidth = 3; ctx.stroke(); }
    ctx.fillStyle = "#fff";
    ctx.font = "600 13px system-ui";
    ctx.textAlign = "center";
    ctx.fillText(c.name + " · " + c.score, c.x + ox, c.y + oy - c.r - 6);
  }
  if (me) $("score").textContent = "score " + me.score;
  if (view !== drawnBoard) {
    drawnBoard = view;
    const board = $("board");
    board.innerHTML = "";
    for (const [name, score] of view.top) {
      const li = document.createElement("li");
      li.textContent = name + " — " + score;
      board.appendChild(li);
    }
  }
}
let drawnBoard = null;
requestAnimationFrame(draw);

// ---- Start -----------------------------------------------------------------------
(async () => {
  try {
    await client.connect();
    game = demo.game = await client.join("/game");
    demo.me = await game.emitWithAck("whoami", null);
    game.on("state", (view) => { demo.view = view; demo.frames++; });
    game.on("news", (text) => line(text, "news"));
    game.on("room", (r) => { demo.code = r.code; $("room").textContent = "room #" + r.code; });
    client.onState((s) => {
      // A fresh session is a new player: learn the new id.
      if (s.state === "connected" && !s.resumed && demo.me !== client.sessionId) {
        game.emitWithAck("whoami", null).then((id) => (demo.me = id)).catch(() => {});
      }
    });
    demo.ready = true;
    refreshRooms();
  } catch (e) {
    $("conn").textContent = "cannot connect: " + e.message;
  }
})();

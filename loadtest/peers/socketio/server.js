// The chat of `loadtest compare` on Socket.IO 4.8 (Node, one thread), a peer that
// Volley is measured against: clients join `/chat` with `{name}`, `join` a room
// (acknowledged with "ok"), and `say` (room, text), which the server sends as
// `message` {from, text} to every other member of the room. WebSocket only.
// It listens on 127.0.0.1 at a free port (or $PORT), prints `listening <port>`,
// and exits when its stdin closes (the load tester holds it).
const http = require("http");
const { Server } = require("socket.io");

const server = http.createServer();
const io = new Server(server, { transports: ["websocket"] });
io.of("/chat").on("connection", (socket) => {
  const name = String((socket.handshake.auth || {}).name || "anonymous");
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack("ok");
  });
  socket.on("say", (room, text) => {
    socket.to(room).emit("message", { from: name, text });
  });
});
server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();

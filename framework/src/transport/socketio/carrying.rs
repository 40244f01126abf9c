//! How an Engine.IO connection uses its carrier: long-polling GETs answered with the
//! records waiting, and the upgrade from polling to WebSocket (`2probe`, `3probe`,
//! `5`).

use actix::prelude::*;

use super::carrier::{Carrier, FromWs, Poll, Waiting, WsOut};
use super::connection::EioConnection;
use crate::protocol::socketio::{encode_payload, EioPacket};

impl EioConnection {
    /// Answers the waiting GET with the records waiting (up to the batch limits).
    pub(super) fn flush(&mut self) {
        let Carrier::Polling { waiting } = &mut self.carrier else {
            return;
        };
        if waiting.is_none() {
            return;
        }
        let config = &self.shared.config;
        let Some(records) = self
            .out
            .take_poll(config.max_poll_body, config.max_poll_frames)
        else {
            return;
        };
        if let Some(Waiting { reply, .. }) = waiting.take() {
            let _ = reply.send(Ok(encode_payload(&records)));
        }
    }
}

impl Handler<Poll> for EioConnection {
    type Result = ();

    fn handle(&mut self, msg: Poll, ctx: &mut Context<Self>) {
        let hold = self.shared.config.poll_hold;
        // During an upgrade the client pauses polling once its last poll returns: a
        // poll that reaches us after `3probe` (it was in flight) is answered at once,
        // as Engine.IO's server does, or the upgrade would wait for the poll's hold.
        if self.probe.as_ref().is_some_and(|p| p.probed) && self.out.nothing_to_poll() {
            let _ = msg.reply.send(Ok(EioPacket::Noop.encode()));
            return;
        }
        let Carrier::Polling { waiting } = &mut self.carrier else {
            let _ = msg
                .reply
                .send(Err("the connection was upgraded to WebSocket".to_owned()));
            return;
        };
        if waiting.is_some() {
            // Engine.IO: overlapping polls are an error that ends the connection.
            let _ = msg
                .reply
                .send(Err("another poll is already waiting".to_owned()));
            return self.close(ctx);
        }
        if self.closing && self.out.nothing_to_poll() {
            let _ = msg.reply.send(Ok(EioPacket::Close.encode()));
            ctx.stop();
            return;
        }
        let timer = ctx.run_later(hold, |act, _| {
            // Nothing came: a noop lets the client poll again.
            if let Carrier::Polling { waiting, .. } = &mut act.carrier {
                if let Some(w) = waiting.take() {
                    let _ = w.reply.send(Ok(EioPacket::Noop.encode()));
                }
            }
        });
        *waiting = Some(Waiting {
            reply: msg.reply,
            timer,
        });
        self.flush();
        if let Carrier::Polling { waiting: None, .. } = &self.carrier {
            // Answered at once: its timer is not needed.
            ctx.cancel_future(timer);
        }
    }
}

impl Handler<FromWs> for EioConnection {
    type Result = ();

    fn handle(&mut self, msg: FromWs, ctx: &mut Context<Self>) {
        let (websocket, carrier) = match &self.carrier {
            Carrier::WebSocket(ws) => (true, Some(ws.id)),
            Carrier::Own => (true, None),
            Carrier::Polling { .. } => (false, None),
        };
        match msg {
            FromWs::Probe(ws) => {
                if websocket || self.probe.is_some() {
                    let _ = ws.tx.unbounded_send(WsOut::Close);
                } else {
                    self.probe = Some(ws);
                }
            }
            FromWs::Packet(id, packet, size) if Some(id) == carrier => {
                self.feed(std::iter::once((packet, size)), ctx)
            }
            FromWs::Packet(id, packet, _) if self.probe.as_ref().is_some_and(|p| p.id == id) => {
                self.probing(packet, ctx)
            }
            FromWs::Gone(id) if Some(id) == carrier => ctx.stop(),
            FromWs::Gone(id) if self.probe.as_ref().is_some_and(|p| p.id == id) => {
                self.probe = None
            }
            _ => {}
        }
    }
}

impl EioConnection {
    /// The upgrade: `2probe` is answered `3probe` (and a waiting poll ends with a
    /// noop, so the client can pause polling); `5` moves the connection, with what is
    /// queued, onto the WebSocket.
    fn probing(&mut self, packet: EioPacket, ctx: &mut Context<Self>) {
        let Some(probe) = &mut self.probe else {
            return;
        };
        match packet {
            EioPacket::Ping(true) => {
                probe.probed = true;
                let _ = probe
                    .tx
                    .unbounded_send(WsOut::Text(EioPacket::Pong(true).encode()));
                self.answer_poll(EioPacket::Noop.encode());
            }
            EioPacket::Upgrade => {
                let Some(ws) = self.probe.take() else {
                    return;
                };
                // The records waiting for a poll go first onto the queue, then
                // whatever the session writes from now on; the socket's writer
                // takes the queue over.
                self.out.to_websocket();
                let _ = ws.tx.unbounded_send(WsOut::Carry(self.out.queue().clone()));
                let old = std::mem::replace(&mut self.carrier, Carrier::WebSocket(ws));
                if let Carrier::Polling {
                    waiting: Some(w), ..
                } = old
                {
                    ctx.cancel_future(w.timer);
                    let _ = w.reply.send(Ok(EioPacket::Noop.encode()));
                }
            }
            _ => self.refuse("unexpected packet during the upgrade".to_owned(), ctx),
        }
    }

    fn answer_poll(&mut self, record: String) {
        if let Carrier::Polling { waiting, .. } = &mut self.carrier {
            if let Some(w) = waiting.take() {
                let _ = w.reply.send(Ok(record));
            }
        }
    }
}

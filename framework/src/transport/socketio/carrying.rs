//! How an Engine.IO connection uses its carrier: records handed to it, long-polling
//! GETs answered, and the upgrade from polling to WebSocket (`2probe`, `3probe`, `5`).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use actix::prelude::*;

use super::carrier::{Carrier, FromWs, Poll, Waiting, WsOut};
use super::connection::EioConnection;
use crate::protocol::socketio::{encode_payload, EioPacket};

impl EioConnection {
    /// Hands one record to the client's carrier; `counted` bytes of the backlog are
    /// given back when it is written.
    pub fn send(&mut self, record: String, counted: usize, ctx: &mut Context<Self>) {
        match &mut self.carrier {
            Carrier::WebSocket(ws) => {
                if ws.tx.send(WsOut::Text(record, counted)).is_err() {
                    self.backlog.fetch_sub(counted, Ordering::Relaxed);
                }
            }
            Carrier::Polling { queue, .. } => {
                queue.push_back((record, counted));
                ctx.run_later(std::time::Duration::ZERO, |act, _| act.flush());
            }
        }
    }

    /// Answers the waiting GET with everything queued (up to the batch limits).
    pub(super) fn flush(&mut self) {
        let Carrier::Polling { queue, waiting } = &mut self.carrier else {
            return;
        };
        if queue.is_empty() {
            return;
        }
        let Some(Waiting { reply, .. }) = waiting.take() else {
            return;
        };
        let limit = self.shared.config.max_poll_body;
        let mut records = Vec::new();
        let mut size = 0;
        while let Some((front, _)) = queue.front() {
            if !records.is_empty()
                && (size + front.len() > limit
                    || records.len() == self.shared.config.max_poll_frames)
            {
                break;
            }
            if let Some((record, counted)) = queue.pop_front() {
                size += record.len() + 1;
                self.backlog.fetch_sub(counted, Ordering::Relaxed);
                records.push(record);
            }
        }
        let _ = reply.send(Ok(encode_payload(&records)));
    }
}

impl Handler<Poll> for EioConnection {
    type Result = ();

    fn handle(&mut self, msg: Poll, ctx: &mut Context<Self>) {
        let hold = self.shared.config.poll_hold;
        // During an upgrade the client pauses polling once its last poll returns: a
        // poll that reaches us after `3probe` (it was in flight) is answered at once,
        // as Engine.IO's server does, or the upgrade would wait for the poll's hold.
        if self.probe.as_ref().is_some_and(|p| p.probed) {
            if let Carrier::Polling { queue, .. } = &self.carrier {
                if queue.is_empty() {
                    let _ = msg.reply.send(Ok(EioPacket::Noop.encode()));
                    return;
                }
            }
        }
        let Carrier::Polling { waiting, queue } = &mut self.carrier else {
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
        if self.closing && queue.is_empty() {
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
        let carrier = match &self.carrier {
            Carrier::WebSocket(ws) => Some(ws.id),
            Carrier::Polling { .. } => None,
        };
        match msg {
            FromWs::Probe(ws) => {
                if carrier.is_some() || self.probe.is_some() {
                    let _ = ws.tx.send(WsOut::Close);
                } else {
                    self.probe = Some(ws);
                }
            }
            FromWs::Packet(id, packet, size) if Some(id) == carrier => {
                self.feed(VecDeque::from([(packet, size)]), ctx)
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
                    .send(WsOut::Text(EioPacket::Pong(true).encode(), 0));
                self.answer_poll(EioPacket::Noop.encode());
            }
            EioPacket::Upgrade => {
                let Some(ws) = self.probe.take() else {
                    return;
                };
                let _ = ws.tx.send(WsOut::Carrier(self.backlog.clone()));
                let old = std::mem::replace(&mut self.carrier, Carrier::WebSocket(ws));
                if let Carrier::Polling { queue, waiting } = old {
                    if let Some(w) = waiting {
                        ctx.cancel_future(w.timer);
                        let _ = w.reply.send(Ok(EioPacket::Noop.encode()));
                    }
                    for (record, counted) in queue {
                        self.send(record, counted, ctx);
                    }
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

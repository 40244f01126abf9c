//! The session's heartbeat timers.
//!
//! One schedule per session, started when it opens and never again: a ping every
//! `ping_interval` on a fixed clock (see [`next_ping`]), sent only while a connection
//! is attached and no earlier ping is outstanding. Each ping arms one deadline,
//! `ping_timeout` later, which its pong cancels; a deadline that fires drops the
//! connection (the session detaches and may resume). A resume or a detach forgets
//! the outstanding ping and its deadline but never starts another schedule, so the
//! number of pings per interval stays one however often a session resumes.
//!
//! Every session's schedule starts on a grid shared by the whole process (see
//! [`ping_grid`]), so the pings of a thread's sessions come due together, a few times
//! per interval, and go out on one wake-up of the thread rather than one each.

use std::sync::OnceLock;
use std::time::Instant;

use actix::prelude::*;

use super::heartbeat::{next_ping, on_grid, ping_grid, Beat};
use super::{Session, ToTransport};
use crate::protocol::{Frame, WireFrame};
use crate::DisconnectReason;

impl Session {
    /// Starts the session's only heartbeat schedule (called once, when it opens).
    pub(super) fn start_heartbeat(&mut self, ctx: &mut Context<Self>) {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let epoch = *EPOCH.get_or_init(Instant::now);
        let grid = ping_grid(self.shared.config.ping_interval);
        self.next_ping = on_grid(Instant::now(), epoch, grid);
        self.schedule_ping(ctx);
    }

    /// Arms the timer for the next slot of the schedule.
    fn schedule_ping(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.next_ping = next_ping(self.next_ping, now, self.shared.config.ping_interval);
        ctx.run_later(self.next_ping.duration_since(now), |act, ctx| {
            if act.ended {
                return;
            }
            act.beat(ctx);
            act.schedule_ping(ctx);
        });
    }

    /// One slot of the schedule: ping the attached client if it owes no pong.
    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.transport().is_none() {
            return;
        }
        match self.heartbeat.tick(Instant::now()) {
            Beat::Ping => {
                self.report_received(ctx);
                // The same bytes for every ping of every session: framed once.
                static PING: OnceLock<WireFrame> = OnceLock::new();
                let ping = PING.get_or_init(|| WireFrame::encode(&Frame::Ping));
                self.write(ping.clone(), ctx);
                let timeout = self.shared.config.ping_timeout;
                let deadline = ctx.run_later(timeout, |act, ctx| {
                    act.ping_deadline = None;
                    if act.heartbeat.outstanding() {
                        act.ping_timed_out(ctx);
                    }
                });
                self.ping_deadline = Some(deadline);
            }
            // Only when `ping_timeout` is longer than `ping_interval`: the deadline
            // normally fires first.
            Beat::TimedOut => self.ping_timed_out(ctx),
            Beat::Wait => {}
        }
    }

    /// Forgets the outstanding ping and its deadline: the connection it was sent on
    /// is gone (detach) or replaced (resume).
    pub(super) fn reset_heartbeat(&mut self, ctx: &mut Context<Self>) {
        self.heartbeat.reset();
        if let Some(deadline) = self.ping_deadline.take() {
            ctx.cancel_future(deadline);
        }
    }

    /// The client did not answer in time: drop its connection; the session detaches
    /// and may be resumed.
    fn ping_timed_out(&mut self, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        let Some(transport) = self.transport() else {
            return;
        };
        tracing::info!(sid = self.id().0, "ping timeout");
        transport.do_send(ToTransport::Drop {
            reason: DisconnectReason::PingTimeout.to_string(),
        });
        self.detach(DisconnectReason::PingTimeout, ctx);
    }
}

//! How any transport opens a session: the first frame is `Hello` (a new session) or
//! `Resume` (attach to an existing one). Shared by WebSocket and long-polling so the
//! two cannot drift apart.

use std::sync::Arc;

use actix::prelude::*;

use crate::protocol::{self, Frame, ResumeToken};
use crate::session::Shared;
use crate::session::{Attach, ClientLimit, ResumeSession, Session, TransportLink};
use crate::SessionId;

/// What a connection's first frame asks for.
pub(crate) enum Opening {
    /// Start a new session for a client that accepts frames up to `limit`.
    Hello(ClientLimit),
    /// Attach to session `sid`, whose client processed up to `last_seq`.
    Resume {
        sid: SessionId,
        token: ResumeToken,
        last_seq: u64,
        limit: ClientLimit,
    },
    /// Not a valid first frame: close with this reason.
    Refuse(String),
}

/// Reads a connection's first frame.
pub(crate) fn opening(frame: Frame) -> Opening {
    match frame {
        Frame::Hello {
            version,
            max_frame_size,
        } if version == protocol::PROTOCOL_VERSION => {
            Opening::Hello(ClientLimit::announced(max_frame_size))
        }
        Frame::Hello { version, .. } => Opening::Refuse(format!(
            "unsupported protocol version {version}; this server speaks {}",
            protocol::PROTOCOL_VERSION
        )),
        Frame::Resume {
            sid,
            token,
            last_seq,
            max_frame_size,
        } => Opening::Resume {
            sid: SessionId(sid),
            token,
            last_seq,
            limit: ClientLimit::announced(max_frame_size),
        },
        other => Opening::Refuse(format!(
            "expected 'hello' as the first frame, got '{}'",
            other.kind()
        )),
    }
}

/// Starts a new session carried by `link`, on the current thread.
pub(crate) fn start_session(
    shared: &Arc<Shared>,
    link: TransportLink,
    limit: ClientLimit,
) -> Addr<Session> {
    Session::new(shared.clone(), link, limit).start()
}

/// Attaches `link` to an existing session after checking its token. On success the
/// session has already queued `Resumed` and the replay on `link`.
pub(crate) async fn resume(
    shared: Arc<Shared>,
    sid: SessionId,
    token: ResumeToken,
    last_seq: u64,
    limit: ClientLimit,
    link: TransportLink,
) -> Result<Addr<Session>, String> {
    let session = shared
        .supervisor
        .send(ResumeSession { sid, token })
        .await
        .map_err(|_| "server shutting down".to_owned())??;
    session
        .send(Attach {
            link,
            last_seq,
            limit,
        })
        .await
        .map_err(|_| "unknown or expired session".to_owned())??;
    Ok(session)
}

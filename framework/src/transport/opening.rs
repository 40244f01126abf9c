//! How any transport opens a session: the first frame is `Hello` (a new session) or
//! `Resume` (attach to an existing one). Shared by WebSocket and long-polling so the
//! two cannot drift apart.

use std::sync::Arc;

use crate::protocol::{self, Frame, ResumeToken};
use crate::session::Shared;
use crate::session::{
    resume_here, ClientLimit, ResumeError, Session, SessionRecipient, TransportLink,
};
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
) -> SessionRecipient {
    SessionRecipient::Local(Session::open(shared.clone(), link, limit))
}

/// Attaches `link` to an existing session after checking its token. On success the
/// session has already queued `Resumed` and the replay on `link`. In a cluster, a
/// session that is not here is looked for on the other nodes and relayed.
pub(crate) async fn resume(
    shared: Arc<Shared>,
    sid: SessionId,
    token: ResumeToken,
    last_seq: u64,
    limit: ClientLimit,
    link: TransportLink,
) -> Result<SessionRecipient, ResumeError> {
    #[cfg(feature = "cluster")]
    if let Some(cluster) = shared.cluster.clone() {
        return match resume_here(&shared, sid, token, last_seq, limit, link, true).await {
            Ok(session) => Ok(SessionRecipient::Resumed(Arc::new(session))),
            Err((_, None)) => Err(ResumeError::Refused("server shutting down".to_owned())),
            Err((reason, Some(link))) => {
                let elsewhere = (sid, token, last_seq, limit);
                cluster
                    .resume_elsewhere(&shared, elsewhere, link, reason)
                    .await
                    .map(|relay| SessionRecipient::Relay(Arc::new(relay)))
            }
        };
    }
    resume_here(&shared, sid, token, last_seq, limit, link, false)
        .await
        .map(|session| SessionRecipient::Resumed(Arc::new(session)))
        .map_err(|(reason, _)| ResumeError::Refused(reason))
}

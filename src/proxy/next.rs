//! What happens after the target answered. The phases that own a reason to send a request again
//! give their verdicts — the session phase on the session, the auth phase on the token — and
//! [`Next`] combines them; the pipeline only acts on the result (Pingora's `fail_to_proxy`).

use crate::auth::oauth::TokenVerdict;
use crate::session::SessionVerdict;

/// What the pipeline does with the response it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The client gets this response; with `start_fresh`, the session is ended on the way.
    Respond { start_fresh: bool },
    /// The response is drained and the request goes again, once; with `relogin`, after a new
    /// login.
    Replay { relogin: bool },
}

impl Next {
    /// A dead session or a refused token is worth one more attempt, if the request can make one.
    pub fn of(session: SessionVerdict, token: TokenVerdict, may_replay: bool) -> Next {
        match (session, token) {
            (SessionVerdict::Relogin, _) => Next::Replay { relogin: true },
            (SessionVerdict::StartFresh, _) => Next::Respond { start_fresh: true },
            (SessionVerdict::Keep, TokenVerdict::Refetch) if may_replay => {
                Next::Replay { relogin: false }
            }
            (SessionVerdict::Keep, _) => Next::Respond { start_fresh: false },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_replays_once_for_a_dead_session_or_a_refused_token_when_it_can() {
        use SessionVerdict::{Keep, Relogin, StartFresh};
        use TokenVerdict::Refetch;
        let keep = TokenVerdict::Keep;
        assert_eq!(
            Next::of(Keep, keep, true),
            Next::Respond { start_fresh: false }
        );
        assert_eq!(
            Next::of(Relogin, keep, true),
            Next::Replay { relogin: true }
        );
        assert_eq!(
            Next::of(Relogin, Refetch, true),
            Next::Replay { relogin: true }
        );
        assert_eq!(
            Next::of(Keep, Refetch, true),
            Next::Replay { relogin: false }
        );
        // A streamed body cannot go again: the refusal reaches the client.
        assert_eq!(
            Next::of(Keep, Refetch, false),
            Next::Respond { start_fresh: false }
        );
        assert_eq!(
            Next::of(StartFresh, Refetch, false),
            Next::Respond { start_fresh: true }
        );
    }
}

//! The session phase's verdict on a target's response: is the session still alive, and if
//! not, can the request go again after a new login. The pipeline combines it with the auth
//! phase's verdict (`proxy::next::Next`) and only acts on the result.

use http::StatusCode;

use super::is_session_gone;
use crate::config::SessionPlan;

/// The session phase's verdict on a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionVerdict {
    /// The session is alive, or the response says nothing about it.
    Keep,
    /// The target ended the session and the request can go again: log in anew, then replay.
    Relogin,
    /// The target ended the session but the request cannot go again (its body streamed): the
    /// client gets this response, and the next request starts a fresh session instead of
    /// hitting the dead one.
    StartFresh,
}

impl SessionVerdict {
    /// Whether the verdict needs the start of the response body: only for a `relogin_on` status
    /// on a request that carried the session, on a route that names a body marker.
    pub fn needs_body(plan: Option<&SessionPlan>, sent_cookie: bool, status: StatusCode) -> bool {
        sent_cookie
            && plan.is_some_and(|plan| {
                plan.relogin_on.contains(&status) && plan.relogin_body_contains.is_some()
            })
    }

    /// `peeked` is the start of the body when [`needs_body`](Self::needs_body) asked for it;
    /// `may_replay` whether this request can be sent again.
    pub fn decide(
        plan: Option<&SessionPlan>,
        sent_cookie: bool,
        status: StatusCode,
        peeked: Option<&[u8]>,
        may_replay: bool,
    ) -> SessionVerdict {
        let gone = plan.is_some_and(|plan| is_session_gone(plan, status, sent_cookie, peeked));
        match (gone, may_replay) {
            (false, _) => SessionVerdict::Keep,
            (true, true) => SessionVerdict::Relogin,
            (true, false) => SessionVerdict::StartFresh,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(marker: Option<&str>) -> SessionPlan {
        let mut plan = crate::config::load_str(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"r\"\nprefix = \"/r/\"\n\
             upstream = \"http://127.0.0.1:1\"\n[routes.session]\nrelogin_on = [401]\n",
            "t.toml",
            std::path::Path::new("."),
            &|_: &str| None,
        )
        .expect("valid config")
        .routes
        .remove(0)
        .session
        .expect("a session plan");
        plan.relogin_body_contains = marker.map(str::to_owned);
        plan
    }

    const GONE: StatusCode = StatusCode::UNAUTHORIZED;

    #[test]
    fn a_relogin_status_on_a_request_with_the_session_ends_it() {
        let plan = plan(None);
        let decide = |sent, status, may_replay| {
            SessionVerdict::decide(Some(&plan), sent, status, None, may_replay)
        };
        assert_eq!(decide(true, GONE, true), SessionVerdict::Relogin);
        assert_eq!(decide(true, GONE, false), SessionVerdict::StartFresh);
        // Without the session cookie, a 401 is about the credentials, not the session.
        assert_eq!(decide(false, GONE, true), SessionVerdict::Keep);
        assert_eq!(
            decide(true, StatusCode::FORBIDDEN, true),
            SessionVerdict::Keep
        );
        assert_eq!(
            SessionVerdict::decide(None, true, GONE, None, true),
            SessionVerdict::Keep
        );
    }

    #[test]
    fn a_body_marker_is_read_only_when_it_can_change_the_verdict() {
        let marked = plan(Some("Session expired"));
        assert!(SessionVerdict::needs_body(Some(&marked), true, GONE));
        assert!(!SessionVerdict::needs_body(Some(&marked), false, GONE));
        assert!(!SessionVerdict::needs_body(
            Some(&marked),
            true,
            StatusCode::OK
        ));
        assert!(!SessionVerdict::needs_body(Some(&plan(None)), true, GONE));
        let decide =
            |body: &[u8]| SessionVerdict::decide(Some(&marked), true, GONE, Some(body), true);
        assert_eq!(
            decide(b"{\"d\":\"Session expired\"}"),
            SessionVerdict::Relogin
        );
        assert_eq!(decide(b"{\"d\":\"Bad password\"}"), SessionVerdict::Keep);
    }
}

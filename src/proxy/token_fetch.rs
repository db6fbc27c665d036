//! Phase: session tokens (`[[routes.session.tokens]]`). Before an attempt, every token the
//! request needs and its session lacks is fetched, once per session however many requests
//! wait for it; the attempt carries the session's tokens; after the response, a value the
//! target rotated in is kept, and a token the target called stale is dropped so that the
//! request's one replay fetches a new one. The rules themselves live in `session::tokens`.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::exchange::Exchange;
use super::{absorb, apply_session, drain_body, forward, ProxyError};
use crate::access_log::{self, Did};
use crate::config::TokenPlan;
use crate::session::tokens::applies;
use crate::session::{Lease, TokenTurn};
use crate::state::SessionStore;
use crate::trace::record::{CapturedBody, Role};

/// How much of a fetch response is read to find a token in its JSON body.
const FETCH_BODY_LIMIT: usize = 256 * 1024;

/// How many times a request asks for a token that other requests keep refusing and dropping
/// between its turn and its read, before it goes without.
const TURNS: usize = 3;

/// The session tokens one attempt is to carry, read once: (index in the route's tokens, value).
#[derive(Default)]
pub(super) struct Held(Vec<(usize, String)>);

/// The session tokens one attempt carried: (index in the route's tokens, value sent).
#[derive(Default)]
pub(super) struct Sent(Vec<(usize, String)>);

/// Whether the route declares session tokens at all.
pub(super) fn configured(x: &Exchange<'_>) -> bool {
    !tokens(x).is_empty()
}

fn tokens<'a>(x: &Exchange<'a>) -> &'a [TokenPlan] {
    x.route
        .plan
        .session
        .as_ref()
        .map_or(&[], |session| session.tokens.as_slice())
}

impl super::Proxy {
    /// The tokens a `method` request carries: each one the session holds, and each one it
    /// lacks fetched. `parent` is the record the fetch is on behalf of (the refused attempt of a
    /// refetch); without one, an id is reserved in the exchange for the attempt about to go,
    /// which takes it.
    ///
    /// Each value is read here, once: another request that the target refused with the same
    /// value drops it from the session at any await, and an attempt that then found no token
    /// would go without one and come back refused with nothing to replay for.
    pub(super) async fn ensure_tokens(
        &self,
        x: &mut Exchange<'_>,
        lease: &mut Lease,
        method: &Method,
        parent: Option<u64>,
        refetch: bool,
    ) -> Result<Held, ProxyError> {
        let mut held = Held::default();
        for (index, token) in tokens(x).iter().enumerate() {
            if !applies(token.methods.as_deref(), method) {
                continue;
            }
            let mut value = lease.token(&token.name);
            for _ in 0..TURNS {
                if value.is_some() {
                    break;
                }
                if Box::pin(self.state.begin_token_fetch(lease, &token.name)).await
                    == TokenTurn::AlreadyFetched
                {
                    value = lease.token(&token.name);
                    continue;
                }
                let parent = match (parent, &x.trace) {
                    (Some(parent), _) => Some(parent),
                    (None, Some(trace)) => {
                        Some(*x.reserved_id.get_or_insert_with(|| trace.tracer.next_id()))
                    }
                    (None, None) => None,
                };
                // A failure is logged once, where the exchange fails, naming the token.
                value = Some(self.fetch_token(x, lease, token, parent, refetch).await?);
            }
            if let Some(value) = value {
                held.0.push((index, value));
            }
        }
        Ok(held)
    }

    /// The fetch request of `token`, alone on the session: the route's credential, the
    /// session's cookies and the tokens it already holds go on it; the cookies it sets are kept.
    /// Returns the token's new value, also stored in the session.
    async fn fetch_token(
        &self,
        x: &mut Exchange<'_>,
        lease: &Lease,
        token: &TokenPlan,
        parent: Option<u64>,
        refetch: bool,
    ) -> Result<String, ProxyError> {
        let fetch = &token.fetch;
        let failed = |why: String| ProxyError::TokenFetchFailed {
            token: token.name.clone(),
            why,
        };
        // The fetch is an attempt of its own, recorded with its own actions.
        x.actions.next_attempt();
        let head = forward::login_head(
            &x.route.target,
            &fetch.method,
            &fetch.path,
            fetch.content_type.as_deref(),
        )?;
        let mut headers = head.headers.clone();
        for (name, value) in &fetch.headers {
            headers.insert(name.clone(), value.clone());
        }
        // The fetch's own `Cookie` (from its configured headers) is kept, merged.
        apply_session(x, Some(lease), &head, &mut headers, false);
        apply(x, held(x, lease, &head.method), &mut headers);
        self.authorize(x, &mut headers).await?;
        let fetch_body = fetch
            .body
            .as_ref()
            .map(|body| Bytes::copy_from_slice(body.expose().as_bytes()));
        x.actions.token_fetched = true;
        x.actions.token_refused = refetch;
        let mut attempt = x.trace.as_ref().map(|trace| {
            let mut attempt = trace.attempt(Role::SessionTokenFetch, parent, &head, &headers, None);
            // The fetch body holds credentials: its record shows the size, never the bytes.
            attempt.request.body = fetch_body.as_ref().map(|body| CapturedBody {
                bytes: Bytes::new(),
                total_size: body.len() as u64,
                truncated: true,
            });
            attempt
        });
        let body = fetch_body.map_or_else(crate::body::empty, crate::body::full);
        let (response, first_byte) = self
            .forward(x, &head, headers, body, &mut attempt)
            .await
            .map_err(|err| failed(format!("{} {}: {err}", fetch.method, fetch.path)))?;
        absorb(x, Some(lease), &head, response.headers());
        let max_body = x.trace.as_ref().map_or(0, |trace| trace.max_body);
        let (status, response_headers, whole) =
            Box::pin(drain_body(response, FETCH_BODY_LIMIT.max(max_body))).await;
        let value = if token.from.needs_body() {
            token.from.from_body(&whole.bytes)
        } else {
            token.from.from_headers(&response_headers)
        };
        let captured = CapturedBody {
            bytes: whole.bytes.slice(..whole.bytes.len().min(max_body)),
            total_size: whole.total_size,
            truncated: whole.total_size > max_body as u64,
        };
        x.submit_own(attempt, (status, response_headers, captured), first_byte);
        if !status.is_success() {
            return Err(failed(format!(
                "the fetch request {} {} answered {status}",
                fetch.method, fetch.path
            )));
        }
        let Some(value) = value else {
            return Err(failed(format!(
                "the answer ({status}) to {} {} holds no {}",
                fetch.method,
                fetch.path,
                token.from.describe()
            )));
        };
        lease.store_token(&token.name, value.clone());
        x.did.add(Did::TOKEN_FETCHED);
        access_log::session_token_fetched(&x.route.plan.name, &token.name, refetch, status);
        Ok(value)
    }
}

/// The tokens the session holds now that a `method` request carries.
fn held(x: &Exchange<'_>, lease: &Lease, method: &Method) -> Held {
    let values = tokens(x).iter().enumerate().filter_map(|(index, token)| {
        applies(token.methods.as_deref(), method)
            .then(|| lease.token(&token.name))
            .flatten()
            .map(|value| (index, value))
    });
    Held(values.collect())
}

/// Phase: the tokens `held` for a request, each in its header as its format says.
pub(super) fn apply(x: &Exchange<'_>, held: Held, headers: &mut HeaderMap) -> Sent {
    let tokens = tokens(x);
    let mut sent = Sent::default();
    for (index, value) in held.0 {
        let Some(token) = tokens.get(index) else {
            continue;
        };
        if let Some(header) = token.format.header_value(&value) {
            headers.insert(token.to.clone(), header);
            sent.0.push((index, value));
        }
    }
    sent
}

/// Phase, after the response: keeps the values a successful response rotated in, and drops
/// each token the attempt carried that the status calls stale. True when one was stale: the
/// request is worth one replay with a new token.
pub(super) fn observe(
    x: &Exchange<'_>,
    lease: &Lease,
    sent: &Sent,
    status: StatusCode,
    headers: &HeaderMap,
    may_replay: bool,
) -> bool {
    let tokens = tokens(x);
    if status.is_success() {
        for token in tokens {
            if let Some(value) = token.from.from_headers(headers) {
                lease.store_token(&token.name, value);
            }
        }
        return false;
    }
    let mut stale = false;
    for (index, value) in &sent.0 {
        let Some(token) = tokens.get(*index) else {
            continue;
        };
        if token.refetch_on.contains(&status) {
            // Another request may have refetched it already: then only the replay is due.
            lease.drop_token(&token.name, value);
            access_log::session_token_stale(&x.route.plan.name, &token.name, status, may_replay);
            stale = true;
        }
    }
    stale
}

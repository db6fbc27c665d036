//! The admin endpoints that answer for the whole fleet when state is shared through Redis:
//! `/readyz` (Redis reachable?), `GET /sessions` (every replica's sessions, from Redis) and
//! `DELETE /sessions/{route}/{key}` (drops it for every replica).

use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::body::ProxyBody;
use crate::config::OnUnavailable;
use crate::reload::Status;
use crate::session::Sessions;
use crate::state::RedisShared;

use super::{json_response, not_found, timestamp};

/// Ready when the plan is (see [`Status::readiness`]) and Redis answers; with
/// `on_unavailable = "local"` an unreachable Redis is reported, not a reason to stop traffic.
pub(super) async fn readyz(status: Option<&Status>, redis: &RedisShared) -> Response<ProxyBody> {
    let (ready, mut body) = match status {
        Some(status) => status.readiness(),
        None => (true, json!({ "ready": true })),
    };
    let fleet = redis.fleet();
    let reachable = fleet.ping().await;
    let local = fleet.mode() == OnUnavailable::Local;
    let ready = ready && (reachable || local);
    body["ready"] = json!(ready);
    body["state"] = json!({
        "backend": "redis",
        "url": fleet.target(),
        "reachable": reachable,
        "on_unavailable": if local { "local" } else { "fail" },
        "serving_locally": local && !reachable,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, &body)
}

/// Every session in Redis under the key prefix: names and metadata, never a cookie value
/// (those are sealed in Redis and not opened here).
pub(super) async fn list(sessions: &Sessions, redis: &RedisShared) -> Response<ProxyBody> {
    let found = match redis.fleet().scan_sessions().await {
        Ok(found) => found,
        Err(down) => return unavailable(down.what),
    };
    let mut out: Vec<Value> = found
        .into_iter()
        .filter_map(|(rev, doc, used_ms)| {
            let doc: Value = serde_json::from_slice(&doc).ok()?;
            let session = doc.get("sessions")?.get(0)?;
            let route = session.get("route")?.as_str()?.to_owned();
            let last_used_ms = used_ms.max(session.get("last_used_ms")?.as_u64()?);
            let last_used = crate::session::from_unix_ms(last_used_ms);
            let cookies: Vec<&str> = session
                .get("cookies")?
                .as_array()?
                .iter()
                .filter_map(|cookie| {
                    cookie
                        .get("name")
                        .or_else(|| cookie.get("cookie").and_then(|c| c.get("name")))
                        .and_then(Value::as_str)
                })
                .collect();
            Some(json!({
                "route": route,
                "key": session.get("key")?,
                "cookies": cookies,
                "created": timestamp(crate::session::from_unix_ms(session.get("created_ms")?.as_u64()?)),
                "last_used": timestamp(last_used),
                "expires_at": last_used.checked_add(sessions.idle_timeout(&route)).map(timestamp),
                "generation": session.get("generation")?,
                "revision": rev,
            }))
        })
        .collect();
    out.sort_by_key(|session| (session["route"].to_string(), session["key"].to_string()));
    json_response(StatusCode::OK, &Value::Array(out))
}

/// Drops a session for every replica: in Redis, and in this process's cache.
pub(super) async fn delete(
    sessions: &Sessions,
    redis: &RedisShared,
    route: &str,
    key: &str,
) -> Response<ProxyBody> {
    let redis_key = redis.fleet().session_key("session", route, key);
    let ttl = sessions.idle_timeout(route);
    let in_redis = match redis.fleet().delete(&redis_key, ttl).await {
        Ok(deleted) => deleted,
        Err(down) => return unavailable(down.what),
    };
    if sessions.remove(route, key) || in_redis {
        super::text(StatusCode::NO_CONTENT, "application/json", String::new())
    } else {
        not_found("no such session")
    }
}

fn unavailable(what: &str) -> Response<ProxyBody> {
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({ "error": "state_unavailable", "detail": format!("Redis did not answer ({what})") }),
    )
}

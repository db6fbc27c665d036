//! Where a request is addressed and where a browser says it comes from. A listener answers only
//! to the names it serves (`Host`, or HTTP/2's `:authority`), so a web page cannot reach it
//! through DNS rebinding; and a browser's cross-site request (`Origin`, `Sec-Fetch-Site`) is told
//! apart from a connector's, which never sends those headers.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::header::{HeaderMap, HeaderName, HeaderValue, HOST, ORIGIN};
use http::Request;

pub use crate::authority::Authority;
use crate::config::{Plan, RouteMatch};

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Tells one set of served names from the next (a reload builds new ones), so that a
/// connection's [`ServedHost`] never outlives the names it was checked against.
static NEXT_NAMES_ID: AtomicU64 = AtomicU64::new(1);

/// The names one listener answers to: loopback names (`localhost` and loopback IP literals,
/// any port), its listen address (for `0.0.0.0`/`::`, the address each connection came in on),
/// and the configured ones.
#[derive(Debug, Clone)]
pub struct ServedNames {
    id: u64,
    /// Configured names, lower-case; a port, when given, must match too.
    names: Vec<(String, Option<u16>)>,
    listen: IpAddr,
    tls: bool,
}

impl ServedNames {
    /// `names` were checked by config validation; any that do not parse are ignored.
    pub fn new<'n>(
        listen: SocketAddr,
        tls: bool,
        names: impl IntoIterator<Item = &'n str>,
    ) -> Self {
        let names = names
            .into_iter()
            .filter_map(Authority::parse)
            .map(|name| (name.host.to_ascii_lowercase(), name.port))
            .collect();
        ServedNames {
            id: NEXT_NAMES_ID.fetch_add(1, Ordering::Relaxed),
            names,
            listen: listen.ip().to_canonical(),
            tls,
        }
    }

    /// The proxy listener's names: `[server] hosts`, the host routes' hosts and the defaults.
    pub fn for_proxy(plan: &Plan) -> Self {
        let route_hosts = plan.routes.iter().filter_map(|route| match &route.matcher {
            RouteMatch::Host(host) => Some(host.as_str()),
            RouteMatch::Prefix(_) => None,
        });
        ServedNames::new(
            plan.server.listen,
            plan.server.tls.is_some(),
            plan.server
                .hosts
                .iter()
                .map(String::as_str)
                .chain(route_hosts),
        )
    }

    /// The scheme clients use to reach this listener, as it appears in an `Origin`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// Whether every name the request is addressed to (its URI's authority and each `Host`
    /// line) is served. A request that names none passes: no browser sends one, and missing
    /// `Host` framing is the framing guard's to refuse.
    pub fn serves_request<B>(&self, request: &Request<B>, local: SocketAddr) -> bool {
        request
            .uri()
            .authority()
            .is_none_or(|authority| self.serves(authority.as_str(), local))
            && request
                .headers()
                .get_all(HOST)
                .iter()
                .all(|host| host.to_str().is_ok_and(|host| self.serves(host, local)))
    }

    /// Whether the request is addressed to this listener ([`ServedNames::serves_request`];
    /// a `Host` the connection's `known` already holds for these names is not parsed again),
    /// and, with `check_browsers`, whether a browser sent it from another site
    /// ([`is_cross_site`] with [`request_authority`]): the same answers from one pass over the
    /// headers, which most requests fill with a `Host` and none of a browser's headers, instead
    /// of a lookup of each of the three names.
    pub fn screen<B>(
        &self,
        request: &Request<B>,
        local: SocketAddr,
        known: &ServedHost,
        check_browsers: bool,
    ) -> (bool, bool) {
        let uri_authority = request.uri().authority();
        let mut served =
            uri_authority.is_none_or(|authority| self.serves(authority.as_str(), local));
        let mut first_host = None;
        let (mut fetched_cross_site, mut has_origin) = (false, false);
        for (name, value) in request.headers() {
            if name == HOST {
                first_host.get_or_insert(value);
                served = served
                    && (known.holds(self.id, value)
                        || value.to_str().is_ok_and(|host| self.serves(host, local))
                            && known.note(self.id, value));
            } else if name == ORIGIN {
                has_origin = true;
            } else if name == SEC_FETCH_SITE {
                fetched_cross_site |= is_cross_site_fetch(value);
            }
        }
        if !served || !check_browsers {
            return (served, false);
        }
        let cross_site = fetched_cross_site
            || has_origin && {
                let authority = match uri_authority {
                    Some(authority) => Some(authority.as_str()),
                    None => first_host.and_then(|host| host.to_str().ok()),
                };
                has_foreign_origin(request.headers(), self.scheme(), authority)
            };
        (true, cross_site)
    }

    /// Whether `authority` names this listener, for a connection that came in on `local`.
    pub fn serves(&self, authority: &str, local: SocketAddr) -> bool {
        let Some(authority) = Authority::parse(authority) else {
            return false;
        };
        if authority.host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        // `0.0.0.0` reaches the local host from some browsers: never a name anyone serves.
        if let Some(ip) = authority.ip().filter(|ip| !ip.is_unspecified()) {
            let local = local.ip().to_canonical();
            if ip.is_loopback() || ip == self.listen || self.listen.is_unspecified() && ip == local
            {
                return true;
            }
        }
        let port = authority.port.unwrap_or(self.default_port());
        self.names.iter().any(|(name, wanted)| {
            name.eq_ignore_ascii_case(authority.host) && wanted.is_none_or(|wanted| wanted == port)
        })
    }

    fn default_port(&self) -> u16 {
        if self.tls {
            443
        } else {
            80
        }
    }
}

/// The `Host` one connection's requests were last found to be served under. A connector sends
/// the same `Host` on every request of a kept-alive connection, so it is checked once per
/// connection and set of served names; any other value is checked in full. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct ServedHost(Arc<Mutex<Option<(u64, HeaderValue)>>>);

impl ServedHost {
    /// Whether `host` is the value last found served by the names numbered `names`.
    fn holds(&self, names: u64, host: &HeaderValue) -> bool {
        self.0.lock().is_ok_and(|known| {
            known
                .as_ref()
                .is_some_and(|(id, known)| *id == names && known == host)
        })
    }

    /// Remembers `host` as served by the names numbered `names`; true, for use in a condition.
    fn note(&self, names: u64, host: &HeaderValue) -> bool {
        if let Ok(mut known) = self.0.lock() {
            *known = Some((names, host.clone()));
        }
        true
    }
}

/// The authority a request is addressed to: its URI's (HTTP/2, absolute form), else `Host`.
pub fn request_authority<B>(request: &Request<B>) -> Option<&str> {
    match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request.headers().get(HOST)?.to_str().ok(),
    }
}

/// Whether a browser sent this request from another site or origin: `Sec-Fetch-Site` says
/// `cross-site` or `same-site`, or an `Origin` is not `scheme://` plus the request's own
/// authority (`Origin: null`, an opaque origin, included).
pub fn is_cross_site(headers: &HeaderMap, scheme: &str, authority: Option<&str>) -> bool {
    headers
        .get_all(SEC_FETCH_SITE)
        .iter()
        .any(is_cross_site_fetch)
        || has_foreign_origin(headers, scheme, authority)
}

/// A `Sec-Fetch-Site` that says the request comes from another site or origin.
fn is_cross_site_fetch(site: &HeaderValue) -> bool {
    let site = site.as_bytes();
    site.eq_ignore_ascii_case(b"cross-site") || site.eq_ignore_ascii_case(b"same-site")
}

/// An `Origin` that is not `scheme://` plus `authority` (`Origin: null` included).
fn has_foreign_origin(headers: &HeaderMap, scheme: &str, authority: Option<&str>) -> bool {
    headers.get_all(ORIGIN).iter().any(|origin| {
        !origin
            .to_str()
            .is_ok_and(|origin| is_same_origin(origin, scheme, authority))
    })
}

fn is_same_origin(origin: &str, scheme: &str, authority: Option<&str>) -> bool {
    let Some(rest) = origin
        .get(..scheme.len())
        .filter(|head| head.eq_ignore_ascii_case(scheme))
        .and_then(|_| origin[scheme.len()..].strip_prefix("://"))
    else {
        return false;
    };
    let (Some(theirs), Some(ours)) = (Authority::parse(rest), authority.and_then(Authority::parse))
    else {
        return false;
    };
    let default = if scheme == "https" { 443 } else { 80 };
    theirs.host.eq_ignore_ascii_case(ours.host)
        && theirs.port.unwrap_or(default) == ours.port.unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn local() -> SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    fn names(listen: &str, names: &[&str]) -> ServedNames {
        ServedNames::new(listen.parse().unwrap(), false, names.iter().copied())
    }

    #[test]
    fn authorities_parse_names_ip_literals_and_ports_and_refuse_the_rest() {
        let parsed = |text| Authority::parse(text).map(|a| (a.host, a.port));
        assert_eq!(
            parsed("Example.com:8443"),
            Some(("Example.com", Some(8443)))
        );
        assert_eq!(parsed("example.com."), Some(("example.com", None)));
        assert_eq!(parsed("example.com:"), Some(("example.com", None)));
        assert_eq!(parsed("[::1]:9090"), Some(("::1", Some(9090))));
        assert_eq!(parsed("[::1]"), Some(("::1", None)));
        for bad in [
            "", ":80", "::1", "[::1", "[nope]", "a:b", "a:99999", "a b", "a/b", "u@a", "[::1]x",
        ] {
            assert_eq!(parsed(bad), None, "{bad:?} parsed");
        }
    }

    #[test]
    fn loopback_names_are_served_on_any_port_and_rebinding_names_are_not() {
        let served = names("127.0.0.1:9090", &[]);
        for host in [
            "localhost",
            "LOCALHOST:9090",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:1",
            "127.1.2.3:9090",
            "[::1]",
            "[::1]:9090",
        ] {
            assert!(served.serves(host, local()), "{host} refused");
        }
        for host in [
            "evil.example",
            "evil.example:9090",
            "localhost.evil.example",
            "10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!served.serves(host, local()), "{host} served");
        }
    }

    #[test]
    fn configured_names_match_without_case_and_with_their_port_when_they_give_one() {
        let served = names(
            "127.0.0.1:8080",
            &["provproxy.internal", "admin.internal:9443"],
        );
        assert!(served.serves("Provproxy.Internal:8080", local()));
        assert!(served.serves("provproxy.internal", local()));
        assert!(served.serves("admin.internal:9443", local()));
        assert!(!served.serves("admin.internal:9444", local()));
        assert!(!served.serves("admin.internal", local()), "default port 80");
    }

    #[test]
    fn the_listen_address_is_served_and_an_unspecified_one_serves_the_connections_address() {
        let specific = names("10.0.0.5:8080", &[]);
        let here: SocketAddr = "10.0.0.5:8080".parse().unwrap();
        assert!(specific.serves("10.0.0.5:8080", here));
        assert!(!specific.serves("10.0.0.6:8080", here));
        let any = names("0.0.0.0:8080", &[]);
        assert!(any.serves("10.0.0.5", here));
        assert!(!any.serves("10.0.0.6", here));
        assert!(!any.serves("0.0.0.0:8080", here));
        assert!(!any.serves("0.0.0.0", "0.0.0.0:0".parse().unwrap()));
        let mapped: SocketAddr = "[::ffff:10.0.0.5]:8080".parse().unwrap();
        assert!(names("[::]:8080", &[]).serves("10.0.0.5", mapped));
    }

    #[test]
    fn every_host_line_and_the_uri_authority_must_be_served() {
        let served = names("127.0.0.1:8080", &[]);
        let request = |uri: &str, hosts: &[&str]| {
            let mut builder = Request::get(uri);
            for host in hosts {
                builder = builder.header(HOST, *host);
            }
            builder.body(()).unwrap()
        };
        assert!(served.serves_request(&request("/x", &["localhost:8080"]), local()));
        assert!(served.serves_request(&request("/x", &[]), local()));
        assert!(!served.serves_request(&request("/x", &["localhost", "evil.example"]), local()));
        assert!(!served.serves_request(&request("http://evil.example/x", &["localhost"]), local()));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn a_connector_without_browser_headers_or_a_same_origin_page_is_not_cross_site() {
        let own = Some("localhost:8080");
        assert!(!is_cross_site(&headers(&[]), "http", own));
        assert!(!is_cross_site(
            &headers(&[
                ("origin", "http://LOCALHOST:8080"),
                ("sec-fetch-site", "same-origin")
            ]),
            "http",
            own
        ));
        assert!(!is_cross_site(
            &headers(&[("sec-fetch-site", "none")]),
            "http",
            own
        ));
        assert!(!is_cross_site(
            &headers(&[("origin", "https://p.internal")]),
            "https",
            Some("p.internal:443")
        ));
    }

    #[test]
    fn a_foreign_or_opaque_origin_or_a_cross_site_fetch_is_cross_site() {
        let own = Some("localhost:8080");
        for pairs in [
            &[("origin", "http://evil.example")][..],
            &[("origin", "null")],
            &[("origin", "https://localhost:8080")],
            &[("origin", "http://localhost:8081")],
            &[("origin", "http://localhost")],
            &[
                ("origin", "http://localhost:8080"),
                ("origin", "http://evil.example"),
            ],
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "Same-Site")],
        ] {
            assert!(is_cross_site(&headers(pairs), "http", own), "{pairs:?}");
        }
        assert!(is_cross_site(
            &headers(&[("origin", "http://localhost:8080")]),
            "http",
            None
        ));
    }
}

//! Route matching: a host route wins, else the longest path prefix.

use http::Request;

use crate::config::{RouteMatch, RoutePlan};

/// The routes in matching order, built once at startup.
pub struct Router {
    /// (host, route index), host lower-case.
    hosts: Vec<(String, usize)>,
    /// (prefix, route index), longest prefix first.
    prefixes: Vec<(String, usize)>,
}

impl Router {
    pub fn new(routes: &[RoutePlan]) -> Self {
        let mut hosts = Vec::new();
        let mut prefixes = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            match &route.matcher {
                RouteMatch::Host(host) => hosts.push((host.clone(), index)),
                RouteMatch::Prefix(prefix) => prefixes.push((prefix.clone(), index)),
            }
        }
        prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Router { hosts, prefixes }
    }

    /// The index of the route for this request.
    pub fn find<B>(&self, request: &Request<B>) -> Option<usize> {
        if !self.hosts.is_empty() {
            if let Some(host) = request_host(request) {
                if let Some((_, index)) = self
                    .hosts
                    .iter()
                    .find(|(candidate, _)| candidate.eq_ignore_ascii_case(host))
                {
                    return Some(*index);
                }
            }
        }
        let path = request.uri().path();
        self.prefixes
            .iter()
            .find(|(prefix, _)| {
                path.starts_with(prefix.as_str())
                    || path.len() + 1 == prefix.len() && prefix.starts_with(path)
            })
            .map(|(_, index)| *index)
    }
}

/// The host the client addressed, without port: the URI's authority (HTTP/2, absolute form)
/// or the `Host` header.
pub fn request_host<B>(request: &Request<B>) -> Option<&str> {
    let authority = match request.uri().host() {
        Some(host) => host,
        None => request.headers().get(http::header::HOST)?.to_str().ok()?,
    };
    Some(strip_port(authority))
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .split_once(']')
            .map_or(authority, |(host, _)| &host[1..]);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_is_stripped_from_hosts_and_ipv6_literals() {
        assert_eq!(strip_port("osmc.local:8080"), "osmc.local");
        assert_eq!(strip_port("osmc.local"), "osmc.local");
        assert_eq!(strip_port("[::1]:8080"), "::1");
    }
}

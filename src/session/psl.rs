//! The public suffix list, for refusing `Domain=` attributes that would share a cookie across
//! unrelated sites (RFC 6265 §5.3 step 5). cookie_store checks nothing without its
//! `publicsuffix` feature, so the Debian list is read here, once per process.

use std::collections::HashSet;
use std::sync::OnceLock;

use url::Host;

/// Where Debian's `publicsuffix` package installs the list.
pub const SYSTEM_LIST: &str = "/usr/share/publicsuffix/public_suffix_list.dat";

/// The rules of a public suffix list, all in ASCII (punycode) form.
#[derive(Debug, Default)]
pub struct SuffixList {
    exact: HashSet<String>,
    /// `*.ck` is stored as `ck`.
    wildcard_parents: HashSet<String>,
    /// `!www.ck` is stored as `www.ck`.
    exceptions: HashSet<String>,
}

impl SuffixList {
    /// Parses the list format: one rule a line, `//` comments, `*.` wildcards, `!` exceptions.
    pub fn parse(text: &str) -> SuffixList {
        let mut list = SuffixList::default();
        for line in text.lines() {
            let Some(rule) = line.split_whitespace().next() else {
                continue;
            };
            if rule.starts_with("//") {
                continue;
            }
            let (set, name) = if let Some(name) = rule.strip_prefix('!') {
                (&mut list.exceptions, name)
            } else if let Some(name) = rule.strip_prefix("*.") {
                (&mut list.wildcard_parents, name)
            } else {
                (&mut list.exact, rule)
            };
            if let Some(ascii) = to_ascii(name) {
                set.insert(ascii);
            }
        }
        list
    }

    /// The system list, loaded on first use; empty when the file is missing, in which case only
    /// the implicit `*` rule (single-label domains) applies.
    pub fn system() -> &'static SuffixList {
        static LIST: OnceLock<SuffixList> = OnceLock::new();
        LIST.get_or_init(|| match std::fs::read_to_string(SYSTEM_LIST) {
            Ok(text) => SuffixList::parse(&text),
            Err(error) => {
                tracing::warn!(
                    path = SYSTEM_LIST,
                    %error,
                    "public suffix list unavailable; only single-label cookie domains are refused"
                );
                SuffixList::default()
            }
        })
    }

    /// Whether `domain` (lower-case ASCII, no leading dot) is itself a public suffix.
    pub fn is_public_suffix(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.');
        if self.exceptions.contains(domain) {
            return false;
        }
        match domain.split_once('.') {
            // The implicit `*` rule: every top-level label is a public suffix.
            None => true,
            Some((_, parent)) => {
                self.exact.contains(domain) || self.wildcard_parents.contains(parent)
            }
        }
    }
}

fn to_ascii(name: &str) -> Option<String> {
    match Host::parse(name).ok()? {
        Host::Domain(ascii) => Some(ascii),
        Host::Ipv4(_) | Host::Ipv6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "// comment\ncom\nco.uk\n*.ck\n!www.ck\n\n// ===\nxn--p1ai\n公司.cn\n";

    #[test]
    fn single_labels_are_public_suffixes_even_without_a_list() {
        let empty = SuffixList::default();
        assert!(empty.is_public_suffix("org"));
        assert!(empty.is_public_suffix("localhost"));
        assert!(!empty.is_public_suffix("example.org"));
    }

    #[test]
    fn listed_rules_wildcards_and_exceptions_apply() {
        let list = SuffixList::parse(SAMPLE);
        assert!(list.is_public_suffix("co.uk"));
        assert!(!list.is_public_suffix("example.co.uk"));
        assert!(list.is_public_suffix("anything.ck"));
        assert!(!list.is_public_suffix("www.ck"));
        assert!(!list.is_public_suffix("a.b.ck"));
    }

    #[test]
    fn unicode_rules_are_compared_in_punycode() {
        let list = SuffixList::parse(SAMPLE);
        assert!(list.is_public_suffix("xn--55qx5d.cn"));
    }
}

//! Session tokens (`[[routes.session.tokens]]`): values a target hands out in a response (a CSRF
//! token in a header, a session id in a login body, a cookie) that later requests of the same
//! session must carry in a header. This module holds the rules — where a value is read from,
//! where and how it is sent — and the values a session holds; fetching them is the pipeline's
//! `token_fetch` phase.
//!
//! The values are credentials: nothing here implements `Debug` or `Display` over a value, and a
//! header built from one is marked sensitive, so that the trace redacts it by construction.

use std::collections::BTreeMap;
use std::fmt;

use http::Method;

pub use crate::token_rules::{parse_to, TokenFormat, TokenFrom};

/// The methods a token goes on (`methods`); `None` = every method.
pub fn applies(methods: Option<&[Method]>, method: &Method) -> bool {
    methods.is_none_or(|methods| methods.contains(method))
}

/// The tokens one session holds, by name. Its `Debug` names them, never a value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeldTokens(BTreeMap<String, String>);

impl fmt::Debug for HeldTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl HeldTokens {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// True when the value changed.
    pub fn store(&mut self, name: &str, value: String) -> bool {
        if self.get(name) == Some(value.as_str()) {
            return false;
        }
        self.0.insert(name.to_owned(), value);
        true
    }

    /// Drops `name` if it still holds `sent`: a later value (fetched by another request, or
    /// rotated in) survives a late refusal of an older one. True when it was dropped.
    pub fn drop_if(&mut self, name: &str, sent: &str) -> bool {
        if self.get(name) != Some(sent) {
            return false;
        }
        self.0.remove(name);
        true
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

impl FromIterator<(String, String)> for HeldTokens {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        HeldTokens(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_tokens_drop_only_the_value_that_was_refused_and_never_show_one() {
        let mut held = HeldTokens::default();
        assert!(held.store("csrf", "old".into()));
        assert!(!held.store("csrf", "old".into()));
        assert!(held.store("csrf", "new".into()));
        assert!(!held.drop_if("csrf", "old"), "a newer value survives");
        assert_eq!(held.get("csrf"), Some("new"));
        assert_eq!(format!("{held:?}"), "{\"csrf\"}");
        assert!(held.drop_if("csrf", "new"));
        assert!(held.is_empty());
        assert!(applies(None, &Method::GET));
        assert!(!applies(Some(&[Method::POST]), &Method::GET));
    }
}

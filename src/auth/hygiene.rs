//! Repairs the `Authorization` mistakes that people make when pasting credentials into
//! connector fields, such as OneTrust's `Bearer Bearer xyz` (a pasted `Bearer xyz` in a field
//! that already adds `Bearer `).

use http::HeaderValue;

/// Schemes that may be named in a description. Anything else might be a credential that merely
/// sits where a scheme would, so it is never echoed.
const NAMEABLE_SCHEMES: &[&str] = &[
    "Basic",
    "Bearer",
    "Digest",
    "Negotiate",
    "NTLM",
    "Token",
    "SSWS",
    "ApiKey",
];

/// Returns the repaired value and a short description of what changed, or `None` when the
/// value is already clean. Repairs: a doubled scheme (`bearer BEARER x` becomes `bearer x`,
/// keeping the first spelling), whitespace around the value, and a run of whitespace between
/// scheme and credentials. The description never contains the credential.
pub fn normalize_authorization(value: &HeaderValue) -> Option<(HeaderValue, String)> {
    let original = value.as_bytes();
    let trimmed = trim_end(trim_start(original));
    if trimmed.is_empty() {
        return None;
    }
    let mut changes: Vec<String> = Vec::new();
    if trimmed.len() != original.len() {
        changes.push("trimmed surrounding whitespace".to_owned());
    }

    let Some(scheme_end) = trimmed.iter().position(|&b| is_ows(b)) else {
        return finish(trimmed, changes);
    };
    let scheme = &trimmed[..scheme_end];
    let separated = &trimmed[scheme_end..];
    let mut credentials = trim_start(separated);
    let separator = &separated[..separated.len() - credentials.len()];

    let mut doubled = false;
    while let Some(rest) = strip_scheme(credentials, scheme) {
        credentials = rest;
        doubled = true;
    }
    if doubled {
        let named = NAMEABLE_SCHEMES
            .iter()
            .find(|s| s.as_bytes().eq_ignore_ascii_case(scheme));
        changes.push(match named {
            Some(name) => format!("removed a doubled {name} scheme"),
            None => "removed a doubled auth scheme".to_owned(),
        });
    } else if separator != b" " {
        changes.push("collapsed whitespace after the scheme".to_owned());
    }

    if changes.is_empty() {
        return None;
    }
    let mut fixed = Vec::with_capacity(scheme.len() + 1 + credentials.len());
    fixed.extend_from_slice(scheme);
    fixed.push(b' ');
    fixed.extend_from_slice(credentials);
    finish(&fixed, changes)
}

fn finish(fixed: &[u8], changes: Vec<String>) -> Option<(HeaderValue, String)> {
    if changes.is_empty() {
        return None;
    }
    // Every byte comes from a valid header value, so this cannot fail in practice.
    let mut value = HeaderValue::from_bytes(fixed).ok()?;
    // A credential: keeps it out of HPACK tables and marks it for redaction downstream.
    value.set_sensitive(true);
    Some((value, changes.join("; ")))
}

/// `credentials` without a leading repeat of `scheme`, if it has one that is followed by more.
fn strip_scheme<'a>(credentials: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    let head = credentials.get(..scheme.len())?;
    if !head.eq_ignore_ascii_case(scheme)
        || !credentials.get(scheme.len()).copied().is_some_and(is_ows)
    {
        return None;
    }
    let rest = trim_start(&credentials[scheme.len()..]);
    (!rest.is_empty()).then_some(rest)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_ows(b))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|&b| !is_ows(b)).map_or(0, |i| i + 1);
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(raw: &'static str) -> Option<(String, String)> {
        normalize_authorization(&HeaderValue::from_static(raw)).map(|(value, description)| {
            assert!(value.is_sensitive());
            (value.to_str().expect("ascii").to_owned(), description)
        })
    }

    #[test]
    fn doubled_bearer_becomes_one() {
        let (value, description) = fix("Bearer Bearer xyz").expect("changed");
        assert_eq!(value, "Bearer xyz");
        assert_eq!(description, "removed a doubled Bearer scheme");
    }

    #[test]
    fn doubled_scheme_is_found_in_any_case_and_keeps_the_first_spelling() {
        assert_eq!(fix("bearer BEARER xyz").expect("changed").0, "bearer xyz");
        assert_eq!(
            fix("Basic Basic dXNlcjpwdw==").expect("changed").0,
            "Basic dXNlcjpwdw=="
        );
        assert_eq!(
            fix("Bearer Bearer Bearer xyz").expect("changed").0,
            "Bearer xyz"
        );
    }

    #[test]
    fn whitespace_is_trimmed_and_collapsed() {
        let (value, description) = fix("  Bearer \t  xyz  ").expect("changed");
        assert_eq!(value, "Bearer xyz");
        assert_eq!(
            description,
            "trimmed surrounding whitespace; collapsed whitespace after the scheme"
        );
        assert_eq!(
            fix("Bearer   Bearer  xyz ").expect("changed").0,
            "Bearer xyz"
        );
    }

    #[test]
    fn clean_values_are_left_alone() {
        assert_eq!(fix("Bearer xyz"), None);
        assert_eq!(fix("Basic dXNlcjpwdw=="), None);
        assert_eq!(fix(r#"Digest username="a",  realm="b""#), None);
        // A credential that happens to equal the scheme is not a doubled prefix.
        assert_eq!(fix("Bearer Bearer"), None);
        assert_eq!(fix(""), None);
    }

    #[test]
    fn description_never_contains_the_credential() {
        for raw in [
            "Bearer Bearer s3cr3t-token",
            "  s3cr3t-token  ",
            "s3cr3t-token s3cr3t-token more",
            "Basic    s3cr3t-token",
        ] {
            let (_, description) = fix(raw).expect("changed");
            assert!(!description.contains("s3cr3t"), "{raw:?} → {description:?}");
        }
    }
}

//! Rewrites the `WWW-Authenticate` challenge of a target's 401 so that clients which choose
//! their scheme from the challenge (Apache HttpClient 4, curl `--anyauth`, CyberArk) find
//! the one the target really accepts.

use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::config::{ChallengeMode, ChallengePlan};
use crate::www_authenticate::{
    configured, header_text, parse, Challenge, ChallengeConfigError, ParseError,
};

/// A route's challenge policy, checked and prepared once at startup.
#[derive(Debug, Clone)]
pub struct Rewriter {
    mode: ChallengeMode,
    add: Vec<Challenge>,
    remove: Vec<String>,
    split: bool,
    /// `replace` ignores the target's challenge, so its lines are rendered once here.
    replacement: Vec<(String, HeaderValue)>,
}

/// What [`Rewriter::rewrite`] did, for the trace and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Untouched,
    /// The `WWW-Authenticate` lines before and after.
    Rewritten {
        before: Vec<String>,
        after: Vec<String>,
    },
    /// The target's challenge could not be parsed; it was passed through exactly as received.
    Malformed {
        warning: String,
    },
}

impl Rewriter {
    pub fn new(plan: &ChallengePlan) -> Result<Rewriter, ChallengeConfigError> {
        let add = configured(&plan.add, &plan.remove, plan.mode == ChallengeMode::Replace)?;
        let replacement = render(add.iter(), plan.split)
            .into_iter()
            .map(|line| match HeaderValue::from_str(&line) {
                Ok(value) => Ok((line, value)),
                Err(_) => Err(ChallengeConfigError::NotAHeaderValue { entry: line }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Rewriter {
            mode: plan.mode,
            add,
            remove: plan.remove.clone(),
            split: plan.split,
            replacement,
        })
    }

    /// True for `mode = keep`: the hot path can skip the challenge phase entirely.
    pub fn is_noop(&self) -> bool {
        self.mode == ChallengeMode::Keep
    }

    /// Rewrites the `WWW-Authenticate` lines of a 401 in place; touches nothing else.
    pub fn rewrite(&self, status: StatusCode, headers: &mut HeaderMap) -> Outcome {
        if status != StatusCode::UNAUTHORIZED || self.is_noop() {
            return Outcome::Untouched;
        }
        let mut before = Vec::new();
        let mut offered = Vec::new();
        for (line, value) in headers.get_all(WWW_AUTHENTICATE).iter().enumerate() {
            let parsed = header_text(value.as_bytes()).and_then(|text| {
                before.push(text.to_owned());
                parse(text)
            });
            match parsed {
                Ok(challenges) => offered.extend(challenges),
                Err(e) => return malformed(&e.on_line(line)),
            }
        }

        let (after, values): (Vec<String>, Vec<HeaderValue>) = match self.mode {
            ChallengeMode::Keep => return Outcome::Untouched,
            ChallengeMode::Replace => self.replacement.iter().cloned().unzip(),
            ChallengeMode::Expand => {
                offered.retain(|c| !self.remove.iter().any(|r| c.is_scheme(r)));
                let missing = self
                    .add
                    .iter()
                    .filter(|a| !offered.iter().any(|o| o.is_scheme(a.scheme())));
                let after = render(offered.iter().chain(missing), self.split);
                let mut values = Vec::with_capacity(after.len());
                for line in &after {
                    match HeaderValue::from_str(line) {
                        Ok(value) => values.push(value),
                        // Parsed text came from a valid header value, so this is unreachable
                        // in practice; passing the original through is the safe answer.
                        Err(_) => {
                            return Outcome::Malformed {
                                warning: format!(
                                    "rewritten challenge {line:?} is not a valid header value; \
                                     the target's challenge was passed through unchanged"
                                ),
                            }
                        }
                    }
                }
                (after, values)
            }
        };
        if after == before {
            return Outcome::Untouched;
        }
        headers.remove(WWW_AUTHENTICATE);
        for value in values {
            headers.append(WWW_AUTHENTICATE, value);
        }
        Outcome::Rewritten { before, after }
    }
}

fn malformed(error: &ParseError) -> Outcome {
    Outcome::Malformed {
        warning: format!(
            "the target's WWW-Authenticate is malformed ({error}); passed through unchanged"
        ),
    }
}

/// One line per challenge when splitting (Apache HttpClient 4 reads only the first challenge
/// of a line), else a single combined line.
fn render<'a>(challenges: impl Iterator<Item = &'a Challenge>, split: bool) -> Vec<String> {
    if split {
        return challenges.map(Challenge::to_string).collect();
    }
    let mut line = String::new();
    for challenge in challenges {
        if !line.is_empty() {
            line.push_str(", ");
        }
        line.push_str(&challenge.to_string());
    }
    if line.is_empty() {
        Vec::new()
    } else {
        vec![line]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_TYPE, SET_COOKIE};

    fn rewriter(mode: ChallengeMode, add: &[&str], remove: &[&str], split: bool) -> Rewriter {
        Rewriter::new(&ChallengePlan {
            mode,
            add: add.iter().map(|s| (*s).to_owned()).collect(),
            remove: remove.iter().map(|s| (*s).to_owned()).collect(),
            split,
        })
        .expect("valid plan")
    }

    fn headers(lines: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            SET_COOKIE,
            HeaderValue::from_static("JSESSIONID=abc; Path=/"),
        );
        for line in lines {
            headers.append(WWW_AUTHENTICATE, HeaderValue::from_static(line));
        }
        headers
    }

    fn lines(headers: &HeaderMap) -> Vec<&str> {
        headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().expect("ascii"))
            .collect()
    }

    const BEARER_ONLY: &str = r#"Bearer realm="servicenow""#;
    const ADD_BASIC: &str = r#"Basic realm="osmc""#;

    #[test]
    fn expand_adds_basic_on_its_own_line_to_a_bearer_only_401() {
        let rw = rewriter(ChallengeMode::Expand, &[ADD_BASIC], &[], true);
        let mut h = headers(&[BEARER_ONLY]);
        let outcome = rw.rewrite(StatusCode::UNAUTHORIZED, &mut h);
        assert_eq!(lines(&h), vec![BEARER_ONLY, ADD_BASIC]);
        assert_eq!(
            outcome,
            Outcome::Rewritten {
                before: vec![BEARER_ONLY.to_owned()],
                after: vec![BEARER_ONLY.to_owned(), ADD_BASIC.to_owned()],
            }
        );
    }

    #[test]
    fn expand_adds_the_challenge_when_the_401_has_none() {
        let rw = rewriter(ChallengeMode::Expand, &[ADD_BASIC], &[], true);
        let mut h = headers(&[]);
        let outcome = rw.rewrite(StatusCode::UNAUTHORIZED, &mut h);
        assert_eq!(lines(&h), vec![ADD_BASIC]);
        assert!(matches!(outcome, Outcome::Rewritten { before, .. } if before.is_empty()));
    }

    #[test]
    fn expand_does_not_add_a_scheme_the_target_offers_in_another_case() {
        let rw = rewriter(ChallengeMode::Expand, &[ADD_BASIC], &[], true);
        let mut h = headers(&[BEARER_ONLY, r#"BASIC realm="target""#]);
        let outcome = rw.rewrite(StatusCode::UNAUTHORIZED, &mut h);
        assert_eq!(outcome, Outcome::Untouched);
        assert_eq!(lines(&h), vec![BEARER_ONLY, r#"BASIC realm="target""#]);
    }

    #[test]
    fn expand_removes_listed_schemes_case_insensitively() {
        let rw = rewriter(ChallengeMode::Expand, &[], &["bearer"], true);
        let mut h = headers(&[r#"Bearer realm="x", Basic realm="t""#]);
        rw.rewrite(StatusCode::UNAUTHORIZED, &mut h);
        assert_eq!(lines(&h), vec![r#"Basic realm="t""#]);
    }

    #[test]
    fn expand_with_remove_and_add_of_one_scheme_replaces_the_targets_challenge() {
        let rw = rewriter(ChallengeMode::Expand, &[ADD_BASIC], &["Basic"], true);
        let mut h = headers(&[r#"Digest realm="t", nonce="abc", Basic realm="t""#]);
        rw.rewrite(StatusCode::UNAUTHORIZED, &mut h);
        assert_eq!(
            lines(&h),
            vec![r#"Digest realm="t", nonce="abc""#, ADD_BASIC]
        );
    }

    #[test]
    fn replace_emits_only_the_configured_challenges() {
        let rw = rewriter(
            ChallengeMode::Replace,
            &[ADD_BASIC, r#"Bearer realm="osmc""#],
            &[],
            true,
        );
        let mut h = headers(&[r#"Negotiate"#, r#"Digest realm="t", nonce="abc""#]);
        rw.rewrite(StatusCode::UNAUTHORIZED, &mut h);
        assert_eq!(lines(&h), vec![ADD_BASIC, r#"Bearer realm="osmc""#]);
    }

    #[test]
    fn split_false_emits_one_combined_line() {
        let rw = rewriter(ChallengeMode::Expand, &[ADD_BASIC], &[], false);
        let mut h = headers(&[BEARER_ONLY, "Negotiate"]);
        rw.rewrite(StatusCode::UNAUTHORIZED, &mut h);
        assert_eq!(
            lines(&h),
            vec![r#"Bearer realm="servicenow", Negotiate, Basic realm="osmc""#]
        );
    }

    #[test]
    fn split_true_splits_a_combined_target_line() {
        let rw = rewriter(ChallengeMode::Expand, &[], &[], true);
        let mut h = headers(&[r#"Digest realm="t", nonce="abc", qop="auth", Basic realm="t""#]);
        rw.rewrite(StatusCode::UNAUTHORIZED, &mut h);
        assert_eq!(
            lines(&h),
            vec![
                r#"Digest realm="t", nonce="abc", qop="auth""#,
                r#"Basic realm="t""#
            ]
        );
    }

    #[test]
    fn untouched_target_challenges_keep_their_exact_bytes() {
        let odd = r#"Bearer   realm = "a\"b" ,error=invalid_token"#;
        let rw = rewriter(ChallengeMode::Expand, &[ADD_BASIC], &[], true);
        let mut h = headers(&[odd]);
        rw.rewrite(StatusCode::UNAUTHORIZED, &mut h);
        assert_eq!(
            lines(&h),
            vec![r#"Bearer   realm = "a\"b" ,error=invalid_token"#, ADD_BASIC]
        );
    }

    #[test]
    fn malformed_target_challenge_passes_through_unchanged() {
        let rw = rewriter(ChallengeMode::Replace, &[ADD_BASIC], &[], true);
        let mut h = headers(&[BEARER_ONLY, r#"Token Basic realm="x""#]);
        let before = h.clone();
        let outcome = rw.rewrite(StatusCode::UNAUTHORIZED, &mut h);
        assert_eq!(h, before);
        match outcome {
            Outcome::Malformed { warning } => {
                assert!(warning.contains("line 2"), "{warning}");
                assert!(warning.contains("byte 12"), "{warning}");
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn responses_other_than_401_are_untouched() {
        let rw = rewriter(ChallengeMode::Replace, &[ADD_BASIC], &[], true);
        for status in [
            StatusCode::OK,
            StatusCode::FORBIDDEN,
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        ] {
            let mut h = headers(&[BEARER_ONLY]);
            let before = h.clone();
            assert_eq!(rw.rewrite(status, &mut h), Outcome::Untouched);
            assert_eq!(h, before);
        }
    }

    #[test]
    fn keep_mode_is_a_noop_even_on_401() {
        let rw = rewriter(ChallengeMode::Keep, &[ADD_BASIC], &["Bearer"], false);
        assert!(rw.is_noop());
        let mut h = headers(&[BEARER_ONLY]);
        let before = h.clone();
        assert_eq!(
            rw.rewrite(StatusCode::UNAUTHORIZED, &mut h),
            Outcome::Untouched
        );
        assert_eq!(h, before);
        assert!(!rewriter(ChallengeMode::Expand, &[], &[], true).is_noop());
    }

    #[test]
    fn rewriting_leaves_other_headers_alone() {
        let rw = rewriter(ChallengeMode::Expand, &[ADD_BASIC], &[], true);
        let mut h = headers(&[BEARER_ONLY]);
        rw.rewrite(StatusCode::UNAUTHORIZED, &mut h);
        let mut others = h.clone();
        others.remove(WWW_AUTHENTICATE);
        assert_eq!(others, headers(&[]));
    }

    fn config_error(mode: ChallengeMode, add: &[&str], remove: &[&str]) -> String {
        Rewriter::new(&ChallengePlan {
            mode,
            add: add.iter().map(|s| (*s).to_owned()).collect(),
            remove: remove.iter().map(|s| (*s).to_owned()).collect(),
            split: true,
        })
        .expect_err("invalid plan")
        .to_string()
    }

    #[test]
    fn bad_add_entries_are_rejected_naming_the_entry() {
        let unparsable = config_error(ChallengeMode::Expand, &[r#"Basic realm="osmc"#], &[]);
        assert_eq!(
            unparsable,
            r#"challenge.add entry "Basic realm=\"osmc": unterminated quoted-string at byte 12 (found '"')"#
        );
        let several = config_error(ChallengeMode::Expand, &[r#"Basic realm="a", Digest"#], &[]);
        assert!(several.contains("holds 2 challenges"), "{several}");
        let empty = config_error(ChallengeMode::Expand, &[" , "], &[]);
        assert!(empty.contains("holds no challenge"), "{empty}");
        let duplicate = config_error(
            ChallengeMode::Expand,
            &[r#"Basic realm="a""#, r#"BASIC realm="b""#],
            &[],
        );
        assert!(
            duplicate.contains(r#"entry "BASIC realm=\"b\"" repeats"#),
            "{duplicate}"
        );
    }

    #[test]
    fn bad_remove_entries_and_empty_replace_are_rejected() {
        let remove = config_error(ChallengeMode::Expand, &[], &["Basic realm"]);
        assert!(
            remove.contains(r#"challenge.remove entry "Basic realm""#),
            "{remove}"
        );
        let replace = config_error(ChallengeMode::Replace, &[], &[]);
        assert!(replace.contains("replace"), "{replace}");
    }
}

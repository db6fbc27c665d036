//! Rewrites the `WWW-Authenticate` challenge of a target's 401 so that clients which choose
//! their scheme from the challenge (Apache HttpClient 4, curl `--anyauth`, CyberArk) find
//! the one the target really accepts.

use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::parse::{header_text, is_token, parse, Challenge, ParseError};
use crate::config::{ChallengeMode, ChallengePlan};

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeConfigError {
    #[error("challenge.add entry {entry:?}: {error}")]
    Unparsable { entry: String, error: ParseError },
    #[error("challenge.add entry {entry:?} holds no challenge")]
    Empty { entry: String },
    #[error("challenge.add entry {entry:?} holds {count} challenges; write one per entry")]
    Several { entry: String, count: usize },
    #[error("challenge.add entry {entry:?} repeats the scheme {scheme:?} of an earlier entry")]
    DuplicateScheme { entry: String, scheme: String },
    #[error("challenge.add entry {entry:?} cannot be sent as a header value")]
    NotAHeaderValue { entry: String },
    #[error("challenge.remove entry {entry:?} is not an auth-scheme name")]
    BadRemove { entry: String },
    #[error("challenge.mode = \"replace\" needs at least one challenge in challenge.add")]
    ReplaceWithoutAdd,
}

impl Rewriter {
    pub fn new(plan: &ChallengePlan) -> Result<Rewriter, ChallengeConfigError> {
        let mut add: Vec<Challenge> = Vec::with_capacity(plan.add.len());
        for entry in &plan.add {
            let mut parsed = parse(entry).map_err(|error| ChallengeConfigError::Unparsable {
                entry: entry.clone(),
                error,
            })?;
            let challenge = match parsed.len() {
                0 => {
                    return Err(ChallengeConfigError::Empty {
                        entry: entry.clone(),
                    })
                }
                1 => parsed.remove(0),
                count => {
                    return Err(ChallengeConfigError::Several {
                        entry: entry.clone(),
                        count,
                    })
                }
            };
            if add.iter().any(|a| a.is_scheme(challenge.scheme())) {
                return Err(ChallengeConfigError::DuplicateScheme {
                    entry: entry.clone(),
                    scheme: challenge.scheme().to_owned(),
                });
            }
            if HeaderValue::from_str(&challenge.to_string()).is_err() {
                return Err(ChallengeConfigError::NotAHeaderValue {
                    entry: entry.clone(),
                });
            }
            add.push(challenge);
        }
        if let Some(entry) = plan.remove.iter().find(|r| !is_token(r)) {
            return Err(ChallengeConfigError::BadRemove {
                entry: entry.clone(),
            });
        }
        if plan.mode == ChallengeMode::Replace && add.is_empty() {
            return Err(ChallengeConfigError::ReplaceWithoutAdd);
        }
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

//! `WWW-Authenticate` rewriting (RFC 9110 §11); the grammar itself is the crate-root vocabulary
//! module `www_authenticate`, re-exported here as `parse`.

pub mod rewrite;

pub use crate::www_authenticate as parse;
pub use crate::www_authenticate::{
    parse, parse_headers, AuthParam, Challenge, ChallengeConfigError, ChallengeData,
    InvalidChallenge, ParseError, ParseErrorKind,
};
pub use rewrite::{Outcome, Rewriter};

//! `WWW-Authenticate` parsing and rewriting (RFC 9110 §11).

pub mod parse;
pub mod rewrite;

pub use parse::{
    parse, parse_headers, AuthParam, Challenge, ChallengeData, InvalidChallenge, ParseError,
    ParseErrorKind,
};
pub use rewrite::{check, ChallengeConfigError, Outcome, Rewriter};

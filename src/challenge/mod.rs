//! `WWW-Authenticate` parsing and rewriting (RFC 9110 §11).

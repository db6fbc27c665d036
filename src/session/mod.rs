//! Cookie jars per session key, single-flight establishment, re-login, persistence.

//! Listeners (plain, TLS), ingress client auth, graceful shutdown.

//! A connection's wait on the server's shutdown watch, polled only when it can have changed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::watch;

/// Polls `waiting`, a future on the watch `news` receives from, the first time and after that
/// only when the watch has news (a new value, or its sender gone). Once polled, `waiting` wakes
/// the task when the watch changes, so the task's other wakes (about two per request) skip it.
/// `watched` says whether it has been polled; `waiting` must not be polled past its end.
// Inline: it runs on every wake of a connection's task.
#[inline]
pub(crate) fn poll_on_news<F: Future>(
    news: &watch::Receiver<bool>,
    watched: &mut bool,
    waiting: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    if *watched && matches!(news.has_changed(), Ok(false)) {
        return Poll::Pending;
    }
    *watched = true;
    waiting.poll(cx)
}

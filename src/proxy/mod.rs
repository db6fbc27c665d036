//! The per-request pipeline: route → session → auth → forward → challenge → trace.

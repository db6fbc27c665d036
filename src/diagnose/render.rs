//! The report for people (one block per exchange, then a summary line) and as JSON.

use std::fmt::Write as _;

use super::{Cause, Class, Report};

/// One block per failed and per recovered exchange, in the order they were recorded, then the
/// summary line.
pub fn render_text(report: &Report) -> String {
    let mut blocks: Vec<(usize, String)> = Vec::new();
    for f in &report.findings {
        let status = if f.status == 0 {
            "no response".to_owned()
        } else {
            f.status.to_string()
        };
        let mut block = format!(
            "#{} {} {} -> {}: {}\n",
            f.entry,
            f.method,
            f.url,
            status,
            f.class.as_str()
        );
        for e in &f.evidence {
            let _ = writeln!(block, "  evidence: {e}");
        }
        let _ = writeln!(block, "  fix: {}\n", f.fix);
        blocks.push((f.entry, block));
    }
    for r in &report.recovered {
        let mut block = format!(
            "#{} {} {} -> {}, recovered ({}): the client got {}\n",
            r.entry,
            r.method,
            r.url,
            r.status,
            r.cause.as_str(),
            r.replay_status
        );
        for e in &r.evidence {
            let _ = writeln!(block, "  evidence: {e}");
        }
        block.push('\n');
        blocks.push((r.entry, block));
    }
    blocks.sort_by_key(|(entry, _)| *entry);
    let mut out: String = blocks.into_iter().map(|(_, block)| block).collect();
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out.push_str(&summary(report));
    out.push('\n');
    out
}

/// `3 exchanges, 2 failed: 1 session_locked, 1 acl_denied; 1 recovered: 1 session_expired`
/// (classes and causes in order of first appearance).
pub fn summary(report: &Report) -> String {
    let mut line = format!(
        "{} exchange{}, {} failed",
        report.exchanges,
        if report.exchanges == 1 { "" } else { "s" },
        report.findings.len()
    );
    let classes: Vec<Class> = report.findings.iter().map(|f| f.class).collect();
    line.push_str(&counts(&classes, Class::as_str));
    if !report.recovered.is_empty() {
        let causes: Vec<Cause> = report.recovered.iter().map(|r| r.cause).collect();
        let _ = write!(line, "; {} recovered", report.recovered.len());
        line.push_str(&counts(&causes, Cause::as_str));
    }
    line
}

/// `: 2 a, 1 b`, or nothing when `items` is empty.
fn counts<T: Copy + PartialEq>(items: &[T], name: fn(T) -> &'static str) -> String {
    let mut counted: Vec<(T, usize)> = Vec::new();
    for &item in items {
        match counted.iter_mut().find(|(c, _)| *c == item) {
            Some((_, n)) => *n += 1,
            None => counted.push((item, 1)),
        }
    }
    if counted.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counted
        .iter()
        .map(|(item, n)| format!("{n} {}", name(*item)))
        .collect();
    format!(": {}", parts.join(", "))
}

pub fn render_json(report: &Report) -> String {
    // Plain structs with string keys: serialization cannot fail.
    serde_json::to_string_pretty(report)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}

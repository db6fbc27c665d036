//! Configuration: raw TOML types, validation into a runtime plan, secrets.
//!
//! Loading takes `&str` so tests need no files; every error names file, line, column and key.

mod error;
pub mod plan;
mod raw;
mod render;
pub mod secret;
mod units;
mod validate;

use std::path::Path;

pub use error::ConfigError;
use error::{line_column, KeyPath};
pub use plan::*;
pub use render::render;
pub use secret::{Secret, SecretSource};
pub use units::{parse_duration, parse_size};

/// Reads and validates a config file; relative paths in it are relative to its directory.
pub fn load(path: &Path) -> Result<Plan, ConfigError> {
    load_file(path, false)
}

/// As [`load`], but a secret whose env var or file is missing is a warning listed in
/// [`Plan::missing_secrets`] instead of an error: `check` validates a config away from the
/// secrets it will run with. Such a plan is for rendering, never for serving.
pub fn load_without_secrets(path: &Path) -> Result<Plan, ConfigError> {
    load_file(path, true)
}

fn load_file(path: &Path, missing_secrets_ok: bool) -> Result<Plan, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
        file: name.clone(),
        line: 0,
        column: 0,
        key_path: String::new(),
        message: format!("cannot read the config file: {err}"),
    })?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let env = |name: &str| std::env::var(name).ok();
    parse(&text, &name, base_dir, &env, missing_secrets_ok)
}

/// Validates config text. `file` is only used in messages; `env` resolves `{ env = "..." }`.
pub fn load_str(
    text: &str,
    file: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, ConfigError> {
    parse(text, file, base_dir, env, false)
}

fn parse(
    text: &str,
    file: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    missing_secrets_ok: bool,
) -> Result<Plan, ConfigError> {
    let place = |span: Option<std::ops::Range<usize>>, key_path: String, message: String| {
        let (line, column) = span.map_or((1, 1), |span| line_column(text, span.start));
        ConfigError {
            file: file.to_owned(),
            line,
            column,
            key_path,
            message,
        }
    };
    let document = toml_edit::ImDocument::parse(text)
        .map_err(|err| place(err.span(), String::new(), one_line(err.message())))?;
    let raw: raw::RawConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|err| {
            // For an unknown key the path already ends with that key.
            let key_path = KeyPath::parse(&err.path().to_string());
            let message = err.inner().message();
            // An unknown key is wrong where the key is; anything else, where its value is.
            let (message, span) = match unknown_key(message) {
                Some(message) => (message, key_path.locate(&document)),
                None => (one_line(message), key_path.locate_value(&document)),
            };
            let span = span.or_else(|| err.inner().span());
            place(span, key_path.to_string(), message)
        })?;
    let resolver = validate::Resolver {
        base_dir,
        env,
        missing_secrets_ok,
    };
    validate::validate(raw, &resolver).map_err(|invalid| {
        let span = invalid.path.locate_value(&document);
        place(span, invalid.path.to_string(), invalid.message)
    })
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into a message that suggests
/// the nearest valid key.
fn unknown_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let nearest = expected
        .iter()
        .map(|candidate| (strsim::jaro_winkler(key, candidate), *candidate))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let message = match nearest {
        Some((_, candidate)) => format!("unknown key `{key}`, did you mean `{candidate}`?"),
        None if expected.is_empty() => format!("unknown key `{key}`"),
        None => format!(
            "unknown key `{key}`, expected one of {}",
            expected.join(", ")
        ),
    };
    Some(message)
}

/// toml's messages can span lines (`invalid table header\nexpected ...`); ours are one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

//! The habits of a service, through the real binary: `check` away from the secrets, shell
//! completions and the man page, readiness while draining, trace files reopened on SIGUSR1.

#[path = "support/binary.rs"]
mod binary;

use std::path::{Path, PathBuf};

use binary::{output, provproxy};

const SECRET_ENV: &str = "H9_MISSING_PASSWORD";

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("provproxy.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn config_with_missing_secret(dir: &Path) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"[server]
listen = "127.0.0.1:0"

[[routes]]
name = "osmc"
prefix = "/osmc/"
upstream = "http://127.0.0.1:9"

[routes.auth]
kind = "basic"
username = "svc"
password = {{ env = "{SECRET_ENV}" }}
"#
        ),
    )
}

fn check(config: &Path, strict: bool) -> (Option<i32>, String, String) {
    let mut command = provproxy();
    command
        .args(["check", "--config"])
        .arg(config)
        .env_remove(SECRET_ENV);
    if strict {
        command.arg("--strict");
    }
    let (status, stdout, stderr) = output(command);
    (status.code(), stdout, stderr)
}

#[test]
fn check_with_a_missing_env_secret_warns_naming_the_key_and_variable_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with_missing_secret(dir.path());
    let (code, stdout, stderr) = check(&config, false);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning")
            && stderr.contains("routes[0].auth.password")
            && stderr.contains(SECRET_ENV),
        "{stderr}"
    );
    assert!(stdout.contains(&format!("<env {SECRET_ENV}>")), "{stdout}");
}

#[test]
fn check_strict_with_a_missing_env_secret_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with_missing_secret(dir.path());
    let (code, _, stderr) = check(&config, true);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(SECRET_ENV), "{stderr}");
    assert!(stderr.contains("--strict"), "{stderr}");
}

#[test]
fn check_with_a_missing_secret_file_warns_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        r#"[[routes]]
name = "osmc"
prefix = "/osmc/"
upstream = "http://127.0.0.1:9"

[routes.auth]
kind = "bearer"
token = { file = "secrets/token" }
"#,
    );
    let (code, _, stderr) = check(&config, false);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("routes[0].auth.token") && stderr.contains("secrets/token"),
        "{stderr}"
    );
    assert_eq!(check(&config, true).0, Some(1));
}

#[test]
fn run_with_a_missing_env_secret_still_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with_missing_secret(dir.path());
    let mut command = provproxy();
    command
        .args(["run", "--config"])
        .arg(&config)
        .env_remove(SECRET_ENV);
    let (status, _, stderr) = output(command);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("environment variable {SECRET_ENV} is not set")),
        "{stderr}"
    );
}

#[test]
fn completions_for_bash_zsh_and_fish_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let mut command = provproxy();
        command.args(["completions", shell]);
        let (status, stdout, stderr) = output(command);
        assert!(status.success(), "{shell}: {stderr}");
        for subcommand in ["run", "check", "diagnose", "demo", "completions", "man"] {
            assert!(stdout.contains(subcommand), "{shell} lacks {subcommand}");
        }
        assert!(stdout.contains("strict"), "{shell} lacks check's --strict");
    }
}

#[test]
fn bash_completion_script_is_valid_bash() {
    let mut command = provproxy();
    command.args(["completions", "bash"]);
    let (_, script, _) = output(command);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("provproxy.bash");
    std::fs::write(&file, script).expect("write script");
    let mut bash = std::process::Command::new("bash");
    bash.arg("-n").arg(&file);
    let (status, _, stderr) = output(bash);
    assert!(status.success(), "{stderr}");
}

#[test]
fn man_page_is_roff_with_the_commands_and_exit_codes() {
    let mut command = provproxy();
    command.arg("man");
    let (status, page, stderr) = output(command);
    assert!(status.success(), "{stderr}");
    assert!(
        page.starts_with(".ie") || page.contains(".TH provproxy"),
        "{page}"
    );
    assert!(
        page.contains("Exit codes"),
        "the exit codes are in the page"
    );
    assert!(page.contains("diagnose"), "subcommands are listed");
}

//! The `redact_body` fuzz target's property, run on pseudo-random inputs in every test run:
//! JSON, form and XML bodies with a secret value planted under secret-named fields never show
//! it, and redaction never panics (`fuzz/fuzz_targets/planted_secrets.rs`).

#[path = "../fuzz/fuzz_targets/planted_secrets.rs"]
mod planted_secrets;

#[test]
fn a_planted_secret_never_survives_redaction_of_generated_bodies() {
    let redactor = planted_secrets::redactor();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut data = Vec::new();
    for _ in 0..20_000 {
        data.clear();
        let len = next() % 400;
        data.extend((0..len).map(|_| next() as u8));
        planted_secrets::check(&redactor, &data);
    }
}

#[test]
fn the_fuzz_seeds_hold_the_property() {
    let redactor = planted_secrets::redactor();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/redact_body");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("seed directory") {
        let data = std::fs::read(entry.expect("seed entry").path()).expect("seed file");
        planted_secrets::check(&redactor, &data);
        seen += 1;
    }
    assert!(seen > 0, "no seeds in {}", dir.display());
}

//! `WWW-Authenticate` values straight from a target: parsing must never panic, and whatever it
//! accepts must re-serialise into a value that parses back to the same challenges (the rewriter
//! depends on that round trip).
#![no_main]

use libfuzzer_sys::fuzz_target;
use provproxy::challenge::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(challenges) = parse(text) else {
        return;
    };
    for challenge in challenges {
        let written = challenge.to_string();
        let reparsed = parse(&written)
            .unwrap_or_else(|err| panic!("{written:?} (from {text:?}) does not parse: {err}"));
        assert_eq!(reparsed.len(), 1, "{written:?} from {text:?}");
        assert_eq!(reparsed[0].to_string(), written, "from {text:?}");
    }
});

//! `Set-Cookie` lines from a target, one per input line, absorbed into one jar: nothing may
//! panic, and every `Cookie` header the jar builds holds exactly the cookies it names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provproxy::session::Jar;
use url::Url;

const URLS: [&str; 4] = [
    "http://127.0.0.1:8080/osmc/api/users",
    "https://osmc.example.com/osmc/",
    "https://a.b.example.co.uk/x/y/z?q=1",
    "http://localhost/",
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let urls: Vec<Url> = URLS.iter().filter_map(|u| Url::parse(u).ok()).collect();
    let now = std::time::SystemTime::now();
    let mut jar = Jar::new();
    for (n, line) in text.split('\n').enumerate() {
        let from = &urls[(usize::from(first) + n) % urls.len()];
        let _ = jar.absorb_line(from, line, now);
    }
    for url in &urls {
        if let Some((header, names)) = jar.cookie_header(url, url.path(), now) {
            // Targets do set UTF-8 values, and a header value may carry them (obs-text), so the
            // pairs are counted on the bytes.
            let pairs = header.as_bytes().windows(2).filter(|w| w == b"; ").count() + 1;
            assert_eq!(pairs, names.len(), "{header:?} / {names:?}");
        }
    }
});

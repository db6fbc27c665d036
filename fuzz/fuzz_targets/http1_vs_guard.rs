//! The proxy's own HTTP/1 request framing (`server::http1::parse` and `chunked`) against the
//! framing guard in front of hyper: for any bytes, delivered in reads of any sizes, the new
//! parser completes exactly the requests guard + hyper completed, with the same methods and
//! body lengths. The first input byte picks the read sizes; the rest is the client's stream.
//! The check itself is shared with the in-tree corpus test (`tests/http1_vs_guard.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/framing_oracle.rs"]
mod framing_oracle;
#[path = "../../tests/support/http1_oracle.rs"]
mod http1_oracle;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let reads = framing_oracle::reads_from_seed(seed, stream.len());
    if let Err(disagreement) = http1_oracle::check(stream, &reads) {
        panic!("{disagreement}\n{:?}", String::from_utf8_lossy(stream));
    }
});

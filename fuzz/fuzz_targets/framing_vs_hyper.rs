//! The framing guard against hyper: for any bytes, delivered in reads of any sizes, the guard
//! and hyper agree on where each request ends, or the guard refuses. The first input byte picks
//! the read sizes; the rest is the client's stream. The check itself is shared with the
//! in-tree corpus test (`tests/framing_vs_hyper.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/framing_oracle.rs"]
mod framing_oracle;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let reads = framing_oracle::reads_from_seed(seed, stream.len());
    if let Err(disagreement) = framing_oracle::check(stream, &reads) {
        panic!("{disagreement}\n{:?}", String::from_utf8_lossy(stream));
    }
});

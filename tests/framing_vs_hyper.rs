//! The framing guard against hyper over a generated corpus, so that `cargo test` proves what
//! the `framing_vs_hyper` fuzz target explores: for every stream, the guard and hyper agree on
//! where each request ends, or the guard refuses (see `support/framing_oracle.rs`). The corpus
//! is built from the pieces request smuggling is made of — Content-Length and
//! Transfer-Encoding variants, chunk sizes and extensions, line endings, Host lines, request
//! targets — combined and mutated by a seeded generator, and each stream is delivered whole,
//! byte by byte and in random reads.

#[path = "support/framing_corpus.rs"]
mod framing_corpus;
#[path = "support/framing_oracle.rs"]
mod framing_oracle;

use framing_corpus::{stream, Rng};

#[test]
fn the_guard_and_hyper_agree_on_where_each_request_ends_or_the_guard_refuses() {
    let mut rng = Rng(0x5eed_f4a3_1b0c_9e27);
    let (mut refused, mut compared, mut several) = (0, 0, 0);
    for case in 0..4000 {
        let bytes = stream(&mut rng);
        // Whole, byte by byte, and a mix of small reads, as the fuzz target picks them.
        let mixed = (rng.next() as u8) | 2;
        for seed in [0, 1, mixed] {
            let reads = framing_oracle::reads_from_seed(seed, bytes.len());
            let outcome = framing_oracle::check(&bytes, &reads).unwrap_or_else(|disagreement| {
                panic!(
                    "case {case}, reads {reads:?}: {disagreement}\n{:?}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            refused += usize::from(outcome.refused.is_some());
            let complete = outcome.parsed.iter().filter(|p| p.body.is_some()).count();
            compared += complete;
            several += usize::from(complete > 1);
        }
    }
    // The corpus must exercise both sides, or the agreement above proves nothing.
    assert!(refused > 1000, "only {refused} streams refused");
    assert!(compared > 1000, "only {compared} requests compared");
    assert!(
        several > 100,
        "only {several} streams with several requests compared"
    );
}

#[test]
fn known_smuggling_shapes_are_refused_or_framed_as_hyper_frames_them() {
    let cases: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGPOST / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\nHost: other\r\n\r\n",
    ];
    for bytes in cases {
        for reads in [vec![bytes.len()], vec![1], vec![7, 3, 11]] {
            framing_oracle::check(bytes, &reads).unwrap_or_else(|disagreement| {
                panic!("{disagreement}\n{:?}", String::from_utf8_lossy(bytes))
            });
        }
    }
}

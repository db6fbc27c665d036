//! The proxy's own HTTP/1 request framing against the framing guard in front of hyper, over a
//! generated corpus, so that `cargo test` proves what the `http1_vs_guard` fuzz target
//! explores: for every stream, the new parser completes exactly the requests guard + hyper
//! completed, with the same methods and body lengths (see `support/http1_oracle.rs`). The
//! corpus is `framing_vs_hyper`'s, plus head lines only hyper used to refuse or read
//! (`Connection`, `Upgrade`, names that are not tokens, obs-text, HTTP/1.0 with chunked), each
//! stream delivered whole, byte by byte and in random reads.

#[path = "support/framing_corpus.rs"]
mod framing_corpus;
#[path = "support/framing_oracle.rs"]
mod framing_oracle;
#[path = "support/http1_oracle.rs"]
mod http1_oracle;

use framing_corpus::{stream, Rng};
use http1_oracle::Stop;

/// Header lines whose rules were hyper's rather than the guard's.
const HYPER_LINES: &[&[u8]] = &[
    b"Connection: close",
    b"Connection: keep-alive",
    b"Connection: upgrade, Close",
    b"connection: closed",
    b"Upgrade: websocket",
    b"Expect: 100-continue",
    b"NoColon",
    b"X(Y): 1",
    b"Content-Length : 5",
    b"X-Obs: caf\xc3\xa9",
    b"X-Empty:",
    b": empty-name",
    b"Transfer-Encoding: chunked",
];

/// A corpus stream, sometimes with one of `HYPER_LINES` after its first line, sometimes as
/// HTTP/1.0.
fn case(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = stream(rng);
    if rng.below(3) == 0 {
        if let Some(end) = bytes.windows(2).position(|pair| pair == b"\r\n") {
            let mut line = rng.pick(HYPER_LINES).to_vec();
            line.extend_from_slice(b"\r\n");
            bytes.splice(end + 2..end + 2, line);
        }
    }
    if rng.below(8) == 0 {
        if let Some(at) = bytes.windows(8).position(|version| version == b"HTTP/1.1") {
            bytes[at + 7] = b'0';
        }
    }
    bytes
}

#[test]
fn the_new_parser_completes_exactly_the_requests_guard_and_hyper_completed() {
    let mut rng = Rng(0x0de1_7a5e_ed5b_4a11);
    let (mut completed, mut refused, mut several, mut closed) = (0, 0, 0, 0);
    for case_number in 0..3000 {
        let bytes = case(&mut rng);
        let mixed = (rng.next() as u8) | 2;
        for seed in [0, 1, mixed] {
            let reads = framing_oracle::reads_from_seed(seed, bytes.len());
            let (framed, _) = http1_oracle::check(&bytes, &reads).unwrap_or_else(|disagreement| {
                panic!(
                    "case {case_number}, reads {reads:?}: {disagreement}\n{:?}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            completed += framed.requests.len();
            several += usize::from(framed.requests.len() > 1);
            refused += usize::from(matches!(framed.stop, Stop::Head(_) | Stop::Body(_)));
            closed += usize::from(framed.stop == Stop::Close);
        }
    }
    // The corpus must exercise both sides, or the agreement above proves nothing.
    assert!(completed > 1000, "only {completed} requests completed");
    assert!(refused > 1000, "only {refused} streams refused");
    assert!(
        several > 100,
        "only {several} streams with several requests"
    );
    assert!(closed > 100, "only {closed} streams closed by Connection");
}

#[test]
fn known_smuggling_and_hyper_only_shapes_agree() {
    let cases: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGPOST / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\nHost: other\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\nGET /second HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /second HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /second HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nGET /second HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nNoColon\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX(Y): 1\r\n\r\n",
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"PRI * HTTP/1.1\r\nHost: h\r\n\r\n",
    ];
    for bytes in cases {
        for reads in [vec![bytes.len()], vec![1], vec![7, 3, 11]] {
            http1_oracle::check(bytes, &reads).unwrap_or_else(|disagreement| {
                panic!("{disagreement}\n{:?}", String::from_utf8_lossy(bytes))
            });
        }
    }
}

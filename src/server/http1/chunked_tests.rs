use super::*;
use crate::server::framing::Scanner;

/// The body, trailers and verdict from `bytes` delivered in reads of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    data: Vec<u8>,
    trailers: Option<HeaderMap>,
    result: Result<bool, Violation>,
}

fn decode_in_reads(bytes: &[u8], size: usize) -> Outcome {
    let mut chunked = Chunked::default();
    let mut buf = BytesMut::new();
    let mut reads = bytes.chunks(size.max(1));
    let mut outcome = Outcome {
        data: Vec::new(),
        trailers: None,
        result: Ok(false),
    };
    loop {
        match chunked.decode(&mut buf) {
            Ok(Decoded::Data(data)) => outcome.data.extend_from_slice(&data),
            Ok(Decoded::Trailers(trailers)) => {
                assert!(outcome.trailers.is_none(), "trailers given twice");
                outcome.trailers = Some(trailers);
            }
            Ok(Decoded::NeedMore) => match reads.next() {
                Some(read) => buf.extend_from_slice(read),
                None => return outcome,
            },
            Ok(Decoded::End) => {
                outcome.result = Ok(true);
                return outcome;
            }
            Err(violation) => {
                outcome.result = Err(violation);
                return outcome;
            }
        }
    }
}

/// The same outcome for the whole body in one read and for every other read size.
fn decode(bytes: &[u8]) -> Outcome {
    let whole = decode_in_reads(bytes, bytes.len());
    for size in 1..bytes.len().min(24) {
        assert_eq!(
            decode_in_reads(bytes, size),
            whole,
            "{:?} in reads of {size}",
            String::from_utf8_lossy(bytes)
        );
    }
    whole
}

/// The guard's verdict on the same body after a chunked head.
fn guard(body: &[u8]) -> Result<(), Violation> {
    let mut stream = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    stream.extend_from_slice(body);
    Scanner::default()
        .scan(&stream)
        .map_err(|refusal| refusal.violation)
}

#[test]
fn well_framed_bodies_are_decoded_whatever_the_reads() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"0\r\n\r\n", b""),
        (b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde"),
        (b"A\r\n0123456789\r\n000\r\n\r\n", b"0123456789"),
        (b"5;name=value\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5 ; name=\"quoted\"\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\t;a\r\nhello\r\n0;last\r\n\r\n", b"hello"),
        (b"5;\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"1;x=\"a;b\"\r\na\r\n0\r\n\r\n", b"a"),
    ];
    for (body, data) in cases {
        let outcome = decode(body);
        assert_eq!(
            outcome.result,
            Ok(true),
            "{:?}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(outcome.data, *data);
        assert_eq!(outcome.trailers, None);
        assert_eq!(guard(body), Ok(()));
    }
}

#[test]
fn trailers_are_given_once_after_the_data() {
    let body = b"2\r\nhi\r\n0\r\nX-Checksum: abc\r\nX-Other:  two \r\n\r\n";
    let outcome = decode(body);
    assert_eq!(outcome.result, Ok(true));
    assert_eq!(outcome.data, b"hi");
    let trailers = outcome.trailers.unwrap();
    assert_eq!(trailers.len(), 2);
    assert_eq!(trailers["x-checksum"], "abc");
    assert_eq!(trailers["x-other"], "two");
    // A Host trailer is not a second Host.
    assert_eq!(decode(b"0\r\nHost: b\r\n\r\n").result, Ok(true));
}

#[test]
fn an_unfinished_body_needs_more() {
    for body in [
        &b"5\r\nhel"[..],
        b"5\r\nhello\r\n",
        b"0\r\nX: 1\r\n",
        b"5;ext",
    ] {
        assert_eq!(decode(body).result, Ok(false));
    }
}

#[test]
fn each_chunk_violation_the_guard_refuses_is_refused_with_its_violation() {
    use Violation::*;
    let cases: &[(&[u8], Violation)] = &[
        (b"zz\r\n", InvalidChunkSize),
        (b"-5\r\n", InvalidChunkSize),
        (b" 5\r\n", InvalidChunkSize),
        (b"\r\n", InvalidChunkSize),
        (b";x\r\n", InvalidChunkSize),
        (b"11111111111111111\r\n", InvalidChunkSize),
        (b"5 \r\nhello\r\n0\r\n\r\n", ChunkSizeWhitespace),
        (b"5\t\r\nhello\r\n", ChunkSizeWhitespace),
        (b"4 x\r\n", ChunkSizeWhitespace),
        (b"4 5\r\n", ChunkSizeWhitespace),
        (b"5;a=\x01\r\nhello\r\n", InvalidChunkExtension),
        (b"5;a=\x7f\r\nhello\r\n", InvalidChunkExtension),
        (b"5\nhello", BareLf),
        (b"5;x\nhello", BareLf),
        (b"5\rhello", BareCr),
        (b"5\r\nhelloXX", MissingChunkCrlf),
        (b"5\r\nhello\rX", MissingChunkCrlf),
        (b"0\r\nX: a\nb\r\n\r\n", BareLf),
        (b"0\r\nX: a\rb\r\n\r\n", BareCr),
        (b"0\r\n\n", BareLf),
        (b"0\r\n\rX", BareCr),
        (b"0\r\nX: a\x00b\r\n\r\n", ControlByte),
        (b"0\r\nX: a\r\n folded\r\n\r\n", ObsFold),
        (b"0\r\nContent-Length: x\r\n\r\n", MalformedContentLength),
        (
            b"0\r\nTransfer-Encoding: gzip\r\n\r\n",
            UnsupportedTransferEncoding,
        ),
    ];
    for (body, expected) in cases {
        let shown = String::from_utf8_lossy(body);
        assert_eq!(decode(body).result, Err(*expected), "{shown:?}");
        assert_eq!(guard(body), Err(*expected), "the guard on {shown:?}");
    }
}

#[test]
fn a_chunk_size_line_longer_than_the_guards_limit_is_refused() {
    let mut body = b"5;".to_vec();
    body.extend(std::iter::repeat_n(b'x', MAX_CHUNK_LINE));
    body.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    assert_eq!(
        decode_in_reads(&body, body.len()).result,
        Err(Violation::InvalidChunkExtension)
    );
    assert_eq!(guard(&body), Err(Violation::InvalidChunkExtension));
}

#[test]
fn hyper_limits_on_extensions_and_trailers_hold() {
    // Extensions: 16 KiB over the whole body, each line within the guard's limit.
    let mut body = Vec::new();
    for _ in 0..5 {
        body.extend_from_slice(b"1;");
        body.extend(std::iter::repeat_n(b'e', 4000));
        body.extend_from_slice(b"\r\nx\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(
        decode_in_reads(&body, 1000).result,
        Err(Violation::InvalidChunkExtension)
    );
    // Trailers: at most 100 lines, under 16 KiB, each a field.
    let mut body = b"0\r\n".to_vec();
    for index in 0..101 {
        body.extend_from_slice(format!("X-{index}: v\r\n").as_bytes());
    }
    body.extend_from_slice(b"\r\n");
    assert_eq!(decode_in_reads(&body, 64).result, Err(UNREADABLE));
    let mut body = b"0\r\nX-Big: ".to_vec();
    body.extend(std::iter::repeat_n(b'v', TRAILERS_LIMIT));
    body.extend_from_slice(b"\r\n\r\n");
    assert_eq!(decode_in_reads(&body, 4096).result, Err(UNREADABLE));
    for unreadable in [&b"0\r\nNoColon\r\n\r\n"[..], b"0\r\nX Y: 1\r\n\r\n"] {
        assert_eq!(decode(unreadable).result, Err(UNREADABLE));
    }
}

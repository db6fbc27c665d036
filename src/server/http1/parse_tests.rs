use super::*;
use crate::server::framing::Scanner;

const LIMITS: Limits = Limits {
    max_head_bytes: 64 * 1024 + 512,
    max_headers: 100,
};

/// A typical SCIM request head, as a connector sends it (shared with `benches/micro.rs`).
pub(crate) const SCIM_HEAD: &[u8] =
    include_bytes!("../../../tests/fixtures/scim_request_head.http");

fn parsed(head: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    parse(head, &LIMITS)
}

fn refused(head: &[u8]) -> Option<Violation> {
    match parsed(head) {
        Err(HeadError::Refused(violation)) => Some(violation),
        _ => None,
    }
}

/// The guard's verdict on the same bytes, for the cases where both must agree.
fn guard(head: &[u8]) -> Option<Violation> {
    Scanner::default()
        .scan(head)
        .err()
        .map(|refusal| refusal.violation)
}

#[test]
fn a_typical_scim_head_is_parsed_whole() {
    let (head, len) = parsed(SCIM_HEAD).unwrap().unwrap();
    assert_eq!(len, SCIM_HEAD.len());
    assert_eq!(head.method, Method::POST);
    assert_eq!(head.uri, "/scim/v2/Users");
    assert_eq!(head.version, Version::HTTP_11);
    assert_eq!(head.headers.len(), 10);
    assert_eq!(head.headers["host"], "proxy.example.com:8443");
    assert_eq!(
        head.headers["content-type"],
        "application/scim+json; charset=utf-8"
    );
    assert_eq!(head.framing, Framing::Length(312));
    assert!(head.keep_alive);
    assert!(!head.expect_continue);
}

#[test]
fn the_length_is_the_heads_and_not_the_buffers() {
    let mut buf = SCIM_HEAD.to_vec();
    buf.extend_from_slice(b"{\"userName\":\"bjensen\"}GET / HTTP/1.1\r\n");
    let (_, len) = parsed(&buf).unwrap().unwrap();
    assert_eq!(len, SCIM_HEAD.len());
}

#[test]
fn each_violation_the_guard_refuses_is_refused_with_its_violation() {
    use Violation::*;
    let cases: &[(&[u8], Violation)] = &[
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ContentLengthWithTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", ContentLengthWithTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", DuplicateContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", MalformedContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", MalformedContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", MalformedContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5 5\r\n\r\n", MalformedContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", MalformedContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n", MalformedContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", MalformedContentLength),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n", UnsupportedTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", UnsupportedTransferEncoding),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", DuplicateTransferEncoding),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", ObsFold),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", ObsFold),
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", BareLf),
        (b"GET / HTTP/1.1\r\nHost: x\n\r\n", BareLf),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\n", BareLf),
        (b"GET / HTTP/1.1\nHost: x\n\n", BareLf),
        (b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", BareLf),
        (b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", BareCr),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: y\r\r\n\r\n", BareCr),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", ControlByte),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", ControlByte),
        (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", ControlByte),
        (b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", Fragment),
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", UnsupportedTarget),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", UnsupportedTarget),
        (b"GET a HTTP/1.1\r\nHost: a\r\n\r\n", UnsupportedTarget),
        (b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", UnsupportedTarget),
        (b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", UnsupportedTarget),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", MalformedRequestLine),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", MalformedRequestLine),
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", MalformedRequestLine),
        (b"GET /\r\nHost: a\r\n\r\n", MalformedRequestLine),
        (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", MissingHost),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", DuplicateHost),
        (b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", DuplicateHost),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", InvalidHost),
        (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", InvalidHost),
        (b"GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", AuthorityMismatch),
        (b"GET https://a.example/x HTTP/1.1\r\nHost: a.example:80\r\n\r\n", AuthorityMismatch),
        (b"GET http://u@a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", AuthorityMismatch),
    ];
    for (head, expected) in cases {
        let shown = String::from_utf8_lossy(head);
        assert_eq!(refused(head), Some(*expected), "{shown:?}");
        assert_eq!(guard(head), Some(*expected), "the guard on {shown:?}");
    }
}

#[test]
fn what_hyper_refused_behind_the_guard_is_refused_too() {
    let cases: &[&[u8]] = &[
        // Not a field, a name that is not a token, a space before the colon.
        b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX(Y): 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
        // A method that is not a token, a target `http::Uri` cannot read.
        b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n",
        // No transfer codings in HTTP/1.0.
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    for head in cases {
        let shown = String::from_utf8_lossy(head);
        assert!(
            matches!(parsed(head), Err(HeadError::Refused(_))),
            "{shown:?}: {:?}",
            parsed(head)
        );
    }
}

#[test]
fn well_formed_heads_the_guard_passes_are_parsed() {
    let cases: &[(&[u8], Framing)] = &[
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Framing::Empty),
        (b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", Framing::Empty),
        (b"GET / HTTP/1.0\r\n\r\n", Framing::Empty),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            Framing::Empty,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:5\r\n\r\n",
            Framing::Length(5),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length:\t05 \r\n\r\n",
            Framing::Length(5),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999999999999999\r\n\r\n",
            Framing::Length(9_999_999_999_999_999_999),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            Framing::Chunked,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding:  CHUNKED \r\n\r\n",
            Framing::Chunked,
        ),
        (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Framing::Empty),
        (
            b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
            Framing::Empty,
        ),
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", Framing::Empty),
        (
            b"GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
            Framing::Empty,
        ),
        (
            b"GET HTTP://A.example:80/x HTTP/1.1\r\nHost: a.EXAMPLE\r\n\r\n",
            Framing::Empty,
        ),
        (
            b"GET https://a.example/x HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
            Framing::Empty,
        ),
        (
            b"GET http://a.example:8080?q HTTP/1.1\r\nHost: a.example:8080\r\n\r\n",
            Framing::Empty,
        ),
        (b"GET http://a.example/x HTTP/1.0\r\n\r\n", Framing::Empty),
        (
            b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
            Framing::Empty,
        ),
    ];
    for (head, framing) in cases {
        let shown = String::from_utf8_lossy(head);
        assert_eq!(guard(head), None, "the guard on {shown:?}");
        let (parsed, len) = parsed(head)
            .unwrap_or_else(|err| panic!("{shown:?}: {err}"))
            .unwrap_or_else(|| panic!("{shown:?} incomplete"));
        assert_eq!(len, head.len(), "{shown:?}");
        assert_eq!(parsed.framing, *framing, "{shown:?}");
    }
}

#[test]
fn keep_alive_and_expect_are_read_as_hyper_read_them() {
    let keep_alive = |head: &[u8]| parsed(head).unwrap().unwrap().0.keep_alive;
    assert!(keep_alive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(!keep_alive(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n"
    ));
    assert!(!keep_alive(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\n\r\n"
    ));
    assert!(keep_alive(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\n"
    ));
    assert!(!keep_alive(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n"
    ));
    assert!(!keep_alive(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(keep_alive(
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    ));
    assert!(!keep_alive(
        b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
    ));

    let expect = |head: &[u8]| parsed(head).unwrap().unwrap().0.expect_continue;
    assert!(expect(
        b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n"
    ));
    assert!(expect(
        b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
    ));
    assert!(!expect(
        b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n"
    ));
    assert!(!expect(
        b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 3\r\n\r\n"
    ));
}

#[test]
fn limits_on_the_head_answer_431() {
    let small = Limits {
        max_head_bytes: 64,
        max_headers: 3,
    };
    assert_eq!(
        parse(SCIM_HEAD, &small).unwrap_err(),
        HeadError::TooManyHeaders
    );
    let few = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 0123456789012345678901234567890123456789\r\n\r\n";
    assert_eq!(parse(few, &small).unwrap_err(), HeadError::TooLarge);
    assert_eq!(parse(&few[..70], &small).unwrap_err(), HeadError::TooLarge);
    // Over the size without a violation of the guard's: 431; with one, the guard's 400 first.
    assert_eq!(
        parse(
            b"GET / HTTP/1.1\nHost: x\r\nX-A: 0123456789012345678901234567890123456789",
            &small
        )
        .unwrap_err(),
        HeadError::Refused(Violation::BareLf)
    );
    // More header slots than the stack holds.
    let many = Limits {
        max_head_bytes: 1 << 20,
        max_headers: 300,
    };
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for index in 0..200 {
        head.extend_from_slice(format!("X-{index}: {index}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    assert_eq!(parse(&head, &many).unwrap().unwrap().0.headers.len(), 201);
    assert_eq!(
        parse(&head, &LIMITS).unwrap_err(),
        HeadError::TooManyHeaders
    );
}

#[test]
fn a_request_line_longer_than_the_guards_limit_is_refused() {
    let mut head = b"GET /".to_vec();
    head.extend(std::iter::repeat_n(b'a', MAX_REQUEST_LINE));
    head.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    let limits = Limits {
        max_head_bytes: 1 << 20,
        max_headers: 100,
    };
    assert_eq!(
        parse(&head, &limits).unwrap_err(),
        HeadError::Refused(Violation::RequestLineTooLong)
    );
}

#[test]
fn a_framing_header_longer_than_the_guard_keeps_is_refused() {
    let mut padded = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5".to_vec();
    padded.extend(std::iter::repeat_n(b' ', MAX_KEPT_LINE));
    padded.extend_from_slice(b"\r\n\r\n");
    assert_eq!(refused(&padded), Some(Violation::MalformedContentLength));
    assert_eq!(guard(&padded), Some(Violation::MalformedContentLength));
}

/// Every way a head can arrive: each prefix is incomplete (or already refused as the whole
/// is), and the whole gives the same result as in one read.
#[test]
fn a_head_split_at_every_byte_is_incomplete_until_it_is_whole() {
    let heads: &[&[u8]] = &[
        SCIM_HEAD,
        b"\r\nGET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: a\x00b\r\nHost: x\r\n\r\n",
    ];
    for head in heads {
        let whole = format!(
            "{:?}",
            parsed(head).map(|h| h.map(|(h, len)| (h.framing, len)))
        );
        for at in 0..head.len() {
            match parsed(&head[..at]) {
                Ok(None) => {}
                Ok(Some(_)) => panic!("{:?} complete at {at}", String::from_utf8_lossy(head)),
                Err(err) => assert_eq!(
                    format!("{:?}", Err::<(), _>(err)),
                    whole,
                    "{:?} at {at}",
                    String::from_utf8_lossy(head)
                ),
            }
        }
    }
}

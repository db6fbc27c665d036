//! The generated corpus of request streams that the differential tests share
//! (`framing_vs_hyper.rs`, `http1_vs_guard.rs`): the pieces request smuggling is made of —
//! Content-Length and Transfer-Encoding variants, chunk sizes and extensions, line endings,
//! Host lines, request targets — combined and mutated by a seeded generator.

/// A small deterministic generator (xorshift64*), so that a failure names a reproducible case.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
        items[self.below(items.len())]
    }
}

const REQUEST_LINES: &[&[u8]] = &[
    b"GET / HTTP/1.1",
    b"POST /scim/v2/Users HTTP/1.1",
    b"PUT /a?b=c HTTP/1.1",
    b"PATCH /x HTTP/1.0",
    b"DELETE /users/7 HTTP/1.1",
    b"GET http://h/x HTTP/1.1",
    b"GET http://other/x HTTP/1.1",
    b"OPTIONS * HTTP/1.1",
    b"GET * HTTP/1.1",
    b"GET /a#b HTTP/1.1",
    b"CONNECT h:443 HTTP/1.1",
    b"GET  / HTTP/1.1",
    b"GET / HTTP/1.2",
    b"get / HTTP/1.1",
    b"G(T / HTTP/1.1",
    b"GET /",
];

const HEADERS: &[&[u8]] = &[
    b"Host: h",
    b"Host: h",
    b"Host: h",
    b"host: other",
    b"Host: h:80",
    b"Host: a b",
    b"Content-Length: 5",
    b"Content-Length: 5",
    b"Content-Length: 0",
    b"Content-Length: 05",
    b"Content-Length: 3",
    b"Content-Length: 5, 5",
    b"Content-Length: +5",
    b"Content-Length : 5",
    b"Content-Length:5",
    b"content-length:\t5 ",
    b"Content-Length: 18446744073709551616",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: Chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, identity",
    b"Transfer-Encoding : chunked",
    b"Transfer-Encoding:\tchunked",
    b"Transfer-Encoding: identity",
    b"X-A: b",
    b" folded",
    b"X: a\x00b",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Expect: 100-continue",
    b"Trailer: X-T",
    b"Upgrade: websocket",
    b"NoColon",
];

const BODIES: &[&[u8]] = &[
    b"",
    b"",
    b"hello",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5;a=b\r\nhello\r\n0\r\n\r\n",
    b"5 ; name=\"quoted\"\r\nhello\r\n0\r\n\r\n",
    b"5 \r\nhello\r\n0\r\n\r\n",
    b"5\t;x\r\nhello\r\n0;y\r\n\r\n",
    b"05\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    b"0\r\n\r\n",
    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    b"5\nhello\n0\n\n",
    b"zz\r\nhello\r\n0\r\n\r\n",
    b" 5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhelloXX0\r\n\r\n",
    b"ffffffffffffffffff\r\n",
    b"5;a=\x01\r\nhello\r\n0\r\n\r\n",
    b"0\r\nX: a\nb\r\n\r\n",
    b"1;x=\"a;b\"\r\na\r\n0\r\n\r\n",
];

const LINE_ENDS: &[&[u8]] = &[b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"];

/// Bytes a mutation puts in: the ones framing decisions turn on.
const MUTATIONS: &[u8] = b"\r\n \t;:,0159aAfF\x00\x7f\"=-#/?";

/// Chunked bodies that are well framed, for requests meant to get through.
const CHUNKED: &[&[u8]] = &[
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5;a=b\r\nhello\r\n0\r\n\r\n",
    b"5 ; name=\"quoted\"\r\nhello\r\n0\r\n\r\n",
    b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n",
    b"0\r\n\r\n",
];

/// One request: half of them well framed (so that hyper and the guard have requests to
/// compare), the others assembled from any pieces.
pub fn request(rng: &mut Rng) -> Vec<u8> {
    let line_end = if rng.below(8) == 0 {
        rng.pick(LINE_ENDS)
    } else {
        b"\r\n"
    };
    let mut bytes = if rng.below(3) == 0 {
        rng.pick(REQUEST_LINES)
    } else {
        rng.pick(&REQUEST_LINES[..5])
    }
    .to_vec();
    bytes.extend_from_slice(line_end);
    if rng.below(8) != 0 {
        bytes.extend_from_slice(b"Host: h");
        bytes.extend_from_slice(line_end);
    }
    let (framing, body): (&[u8], &[u8]) = match rng.below(4) {
        0 => (b"", b""),
        1 => (b"Content-Length: 5", b"hello"),
        2 => (b"Transfer-Encoding: chunked", rng.pick(CHUNKED)),
        _ => (rng.pick(HEADERS), rng.pick(BODIES)),
    };
    for _ in 0..rng.below(3) {
        bytes.extend_from_slice(rng.pick(HEADERS));
        bytes.extend_from_slice(line_end);
    }
    if !framing.is_empty() {
        bytes.extend_from_slice(framing);
        bytes.extend_from_slice(line_end);
    }
    bytes.extend_from_slice(line_end);
    bytes.extend_from_slice(body);
    bytes
}

pub fn stream(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..1 + rng.below(3) {
        bytes.extend(request(rng));
    }
    for _ in 0..rng.below(4).saturating_sub(1) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        let byte = MUTATIONS[rng.below(MUTATIONS.len())];
        match rng.below(3) {
            0 => bytes[at] = byte,
            1 => bytes.insert(at, byte),
            _ => {
                bytes.remove(at);
            }
        }
    }
    bytes
}

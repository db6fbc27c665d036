//! The `WWW-Authenticate` parser against one table of cases, and the round-trip property
//! (parse → serialise → parse yields the same challenges) over the table and over generated
//! combinations.

use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderValue};
use provproxy::challenge::{
    parse, parse_headers, AuthParam, Challenge, ChallengeData, ParseErrorKind,
};

/// The expected parse of one challenge: scheme exactly as written, and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    scheme: String,
    data: ChallengeData,
}

fn p(scheme: &str, params: &[(&str, &str)]) -> Expected {
    Expected {
        scheme: scheme.to_owned(),
        data: ChallengeData::Params(
            params
                .iter()
                .map(|(name, value)| AuthParam {
                    name: (*name).to_owned(),
                    value: (*value).to_owned(),
                })
                .collect(),
        ),
    }
}

fn t(scheme: &str, token68: &str) -> Expected {
    Expected {
        scheme: scheme.to_owned(),
        data: ChallengeData::Token68(token68.to_owned()),
    }
}

fn observed(challenges: &[Challenge]) -> Vec<Expected> {
    challenges
        .iter()
        .map(|c| Expected {
            scheme: c.scheme().to_owned(),
            data: c.data().clone(),
        })
        .collect()
}

type Outcome = Result<Vec<Expected>, (ParseErrorKind, usize)>;

fn err(kind: ParseErrorKind, offset: usize) -> Outcome {
    Err((kind, offset))
}

/// (input, expected parse). Errors give the kind and the byte offset.
fn table() -> Vec<(&'static str, Outcome)> {
    use ParseErrorKind::*;
    vec![
        // Single challenges.
        (
            r#"Basic realm="osmc""#,
            Ok(vec![p("Basic", &[("realm", "osmc")])]),
        ),
        ("Bearer", Ok(vec![p("Bearer", &[])])),
        ("Negotiate", Ok(vec![p("Negotiate", &[])])),
        (
            r#"Bearer realm="servicenow""#,
            Ok(vec![p("Bearer", &[("realm", "servicenow")])]),
        ),
        (
            r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
            Ok(vec![p(
                "Bearer",
                &[
                    ("realm", "example"),
                    ("error", "invalid_token"),
                    ("error_description", "The access token expired"),
                ],
            )]),
        ),
        (
            r#"Custom a="1", b=2, c="3""#,
            Ok(vec![p("Custom", &[("a", "1"), ("b", "2"), ("c", "3")])]),
        ),
        (
            r#"Digest realm="t",nonce="abc""#,
            Ok(vec![p("Digest", &[("realm", "t"), ("nonce", "abc")])]),
        ),
        // token68.
        ("Negotiate abc==", Ok(vec![t("Negotiate", "abc==")])),
        (
            "Negotiate YIIBhgYGKwYBBQUCoIIBejCCAXag",
            Ok(vec![t("Negotiate", "YIIBhgYGKwYBBQUCoIIBejCCAXag")]),
        ),
        (
            "NTLM TlRMTVNTUAACAAAA+/9=",
            Ok(vec![t("NTLM", "TlRMTVNTUAACAAAA+/9=")]),
        ),
        ("Bearer abc", Ok(vec![t("Bearer", "abc")])),
        ("Negotiate abc==  ", Ok(vec![t("Negotiate", "abc==")])),
        // The grammar reads `name=` with nothing after it as a token68.
        ("Basic realm=", Ok(vec![t("Basic", "realm=")])),
        (
            "Negotiate abc==, Basic realm=\"x\"",
            Ok(vec![t("Negotiate", "abc=="), p("Basic", &[("realm", "x")])]),
        ),
        // Several challenges on one line.
        (
            r#"Basic realm="a", Bearer realm="b""#,
            Ok(vec![
                p("Basic", &[("realm", "a")]),
                p("Bearer", &[("realm", "b")]),
            ]),
        ),
        (
            r#"Basic realm="a",Bearer"#,
            Ok(vec![p("Basic", &[("realm", "a")]), p("Bearer", &[])]),
        ),
        ("Basic, Bearer", Ok(vec![p("Basic", &[]), p("Bearer", &[])])),
        (
            r#"Digest realm="t", nonce="abc", qop="auth", Basic realm="t""#,
            Ok(vec![
                p(
                    "Digest",
                    &[("realm", "t"), ("nonce", "abc"), ("qop", "auth")],
                ),
                p("Basic", &[("realm", "t")]),
            ]),
        ),
        (
            r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#,
            Ok(vec![
                p(
                    "Newauth",
                    &[
                        ("realm", "apps"),
                        ("type", "1"),
                        ("title", r#"Login to "apps""#),
                    ],
                ),
                p("Basic", &[("realm", "simple")]),
            ]),
        ),
        (
            r#"Bearer realm="x", Basic realm="x""#,
            Ok(vec![
                p("Bearer", &[("realm", "x")]),
                p("Basic", &[("realm", "x")]),
            ]),
        ),
        // Quoting and escapes.
        (
            r#"Basic realm="a, b""#,
            Ok(vec![p("Basic", &[("realm", "a, b")])]),
        ),
        (
            r#"Basic realm="say \"hi\"""#,
            Ok(vec![p("Basic", &[("realm", r#"say "hi""#)])]),
        ),
        (
            r#"Basic realm="back\\slash""#,
            Ok(vec![p("Basic", &[("realm", r"back\slash")])]),
        ),
        (
            r#"Basic realm="\a\b""#,
            Ok(vec![p("Basic", &[("realm", "ab")])]),
        ),
        (r#"Basic realm="""#, Ok(vec![p("Basic", &[("realm", "")])])),
        (
            "Basic realm=\"tab\there\"",
            Ok(vec![p("Basic", &[("realm", "tab\there")])]),
        ),
        (
            "Basic realm=\"caf\u{e9}\"",
            Ok(vec![p("Basic", &[("realm", "caf\u{e9}")])]),
        ),
        (
            r#"Basic realm="a=b, Bearer c""#,
            Ok(vec![p("Basic", &[("realm", "a=b, Bearer c")])]),
        ),
        // Case is kept as written (comparison is the caller's business).
        (
            r#"basic REALM="x""#,
            Ok(vec![p("basic", &[("REALM", "x")])]),
        ),
        ("BASIC realm=x", Ok(vec![p("BASIC", &[("realm", "x")])])),
        // Whitespace, including BWS around `=`.
        (
            r#"Basic realm = "x""#,
            Ok(vec![p("Basic", &[("realm", "x")])]),
        ),
        ("Basic realm= x", Ok(vec![p("Basic", &[("realm", "x")])])),
        (
            r#"Basic realm ="x""#,
            Ok(vec![p("Basic", &[("realm", "x")])]),
        ),
        (
            "Basic realm=\"x\"\t",
            Ok(vec![p("Basic", &[("realm", "x")])]),
        ),
        (
            "\tBasic realm=\"x\"",
            Ok(vec![p("Basic", &[("realm", "x")])]),
        ),
        (
            "Basic   realm=\"x\"",
            Ok(vec![p("Basic", &[("realm", "x")])]),
        ),
        // Empty list elements.
        ("", Ok(vec![])),
        ("   ", Ok(vec![])),
        (",", Ok(vec![])),
        (
            r#", , Basic realm="x""#,
            Ok(vec![p("Basic", &[("realm", "x")])]),
        ),
        (
            r#"Basic realm="x", ,"#,
            Ok(vec![p("Basic", &[("realm", "x")])]),
        ),
        (
            r#"Basic realm="x", , charset="UTF-8""#,
            Ok(vec![p("Basic", &[("realm", "x"), ("charset", "UTF-8")])]),
        ),
        (
            r#"Basic realm="x",, Bearer"#,
            Ok(vec![p("Basic", &[("realm", "x")]), p("Bearer", &[])]),
        ),
        // A param right after a comma that follows a bare scheme belongs to that scheme.
        (
            r#"Basic, realm="x""#,
            Ok(vec![p("Basic", &[("realm", "x")])]),
        ),
        // Malformed.
        (r#"Basic realm="x"#, err(UnterminatedQuote, 12)),
        (r#"Basic realm="x\"#, err(UnterminatedQuote, 12)),
        (r#"="x""#, err(ExpectedScheme, 0)),
        (r#""Basic""#, err(ExpectedScheme, 0)),
        (r#"Basic ="x""#, err(ExpectedParamName, 6)),
        (r#"Basic realm="x", ="y""#, err(ExpectedScheme, 17)),
        (r#"Basic realm="x" charset="y""#, err(ExpectedComma, 16)),
        (r#"Basic realm="x"; charset=y"#, err(ExpectedComma, 15)),
        ("Basic realm=a b", err(ExpectedComma, 14)),
        ("Basic realm=\"a\u{1}b\"", err(ControlCharacter, 14)),
        ("Basic realm=x\u{1}", err(ControlCharacter, 13)),
        ("Basic\u{0}", err(ControlCharacter, 5)),
        ("Basic realm=\"a\u{7f}\"", err(ControlCharacter, 14)),
        (
            "Basic realm=\"a\r\nX-Injected: 1\"",
            err(ControlCharacter, 14),
        ),
        (r#"Basic charset="x", realm="#, err(ExpectedParamValue, 25)),
        (r#"Bearer realm="x", error="#, err(ExpectedParamValue, 24)),
        ("Basic realm=@", err(ExpectedParamValue, 12)),
        ("Basic realm=\u{201c}x\u{201d}", err(ExpectedParamValue, 12)),
        ("Basic realm=x=", err(ExpectedComma, 13)),
        ("Negotiate abc== def", err(ExpectedParamValue, 14)),
        (r#"Negotiate abc==, realm="x""#, err(ParamAfterToken68, 17)),
        (r#"Basic realm"x""#, err(ExpectedEquals, 11)),
        (r#"Basic"realm""#, err(ExpectedComma, 5)),
        // The session-locked field case's header is not RFC 9110: `Token` then two words.
        (r#"Token Basic realm="x""#, err(ExpectedEquals, 12)),
    ]
}

#[test]
fn table_cases_parse_as_stated() {
    let table = table();
    assert!(table.len() >= 40, "the table must hold at least 40 cases");
    let mut failures = Vec::new();
    for (input, expected) in &table {
        let got = parse(input)
            .map(|c| observed(&c))
            .map_err(|e| (e.kind(), e.offset()));
        if &got != expected {
            failures.push(format!(
                "{input:?}\n   expected {expected:?}\n   got      {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn parsed_challenges_reserialise_byte_for_byte() {
    for (input, expected) in table() {
        if expected.is_err() {
            continue;
        }
        let challenges = parse(input).expect("valid case");
        for challenge in &challenges {
            let text = challenge.to_string();
            assert_eq!(Some(text.as_str()), challenge.source(), "{input:?}");
            assert!(input.contains(&text), "{text:?} is not a span of {input:?}");
        }
        if let [single] = challenges.as_slice() {
            assert_eq!(
                single.to_string(),
                input.trim_matches([' ', '\t', ',']),
                "{input:?}"
            );
        }
    }
}

fn join(challenges: &[Challenge]) -> String {
    challenges
        .iter()
        .map(Challenge::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn table_cases_round_trip_as_received_and_canonically() {
    for (input, expected) in table() {
        if expected.is_err() {
            continue;
        }
        let first = parse(input).expect("valid case");
        let as_received = parse(&join(&first)).expect("re-parse of the received form");
        assert_eq!(observed(&as_received), observed(&first), "{input:?}");

        let canonical: Vec<Challenge> = first
            .iter()
            .cloned()
            .map(Challenge::into_canonical)
            .collect();
        let text = join(&canonical);
        let again = parse(&text).unwrap_or_else(|e| panic!("{text:?} from {input:?}: {e}"));
        assert_eq!(observed(&again), observed(&first), "{input:?} → {text:?}");
    }
}

fn pool() -> Vec<Challenge> {
    let params = |scheme: &str, params: &[(&str, &str)]| {
        Challenge::new(
            scheme,
            ChallengeData::Params(
                params
                    .iter()
                    .map(|(n, v)| AuthParam {
                        name: (*n).to_owned(),
                        value: (*v).to_owned(),
                    })
                    .collect(),
            ),
        )
        .expect("valid challenge")
    };
    let token68 = |scheme: &str, t: &str| {
        Challenge::new(scheme, ChallengeData::Token68(t.to_owned())).expect("valid challenge")
    };
    vec![
        params("Basic", &[("realm", "osmc")]),
        params("Bearer", &[]),
        params(
            "Digest",
            &[
                ("realm", "a, b"),
                ("nonce", "n=1"),
                ("qop", "auth"),
                ("stale", "false"),
            ],
        ),
        params(
            "Custom",
            &[("quote", r#"say "hi""#), ("slash", r"a\b"), ("empty", "")],
        ),
        params("x-Scheme!", &[("UPPER", "Mixed Case"), ("t", "tok~en")]),
        params("Uni", &[("realm", "caf\u{e9} \u{2603}"), ("tab", "a\tb")]),
        token68("Negotiate", "YIIBhg+/9=="),
        token68("NTLM", "abc"),
    ]
}

#[test]
fn generated_combinations_round_trip() {
    let pool = pool();
    let mut combinations = 0;
    for a in &pool {
        for b in &pool {
            for c in &pool {
                let list = vec![a.clone(), b.clone(), c.clone()];
                let text = join(&list);
                let parsed = parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
                assert_eq!(observed(&parsed), observed(&list), "{text:?}");
                combinations += 1;
            }
        }
    }
    assert_eq!(combinations, pool.len().pow(3));
}

#[test]
fn canonical_form_quotes_non_tokens_and_realm_and_escapes() {
    let challenge = Challenge::new(
        "Custom",
        ChallengeData::Params(vec![
            AuthParam {
                name: "realm".into(),
                value: "plain".into(),
            },
            AuthParam {
                name: "a".into(),
                value: "tok".into(),
            },
            AuthParam {
                name: "b".into(),
                value: "two words".into(),
            },
            AuthParam {
                name: "c".into(),
                value: r#"q"\"#.into(),
            },
            AuthParam {
                name: "d".into(),
                value: String::new(),
            },
        ]),
    )
    .expect("valid challenge");
    assert_eq!(
        challenge.to_string(),
        r#"Custom realm="plain", a=tok, b="two words", c="q\"\\", d="""#
    );
}

#[test]
fn constructor_rejects_parts_that_would_not_parse() {
    assert!(Challenge::new("Two words", ChallengeData::Params(vec![])).is_err());
    assert!(Challenge::new("Negotiate", ChallengeData::Token68("a=b".into())).is_err());
    let bad_name = vec![AuthParam {
        name: "a b".into(),
        value: "x".into(),
    }];
    assert!(Challenge::new("Basic", ChallengeData::Params(bad_name)).is_err());
    let control = vec![AuthParam {
        name: "realm".into(),
        value: "a\r\nb".into(),
    }];
    assert!(Challenge::new("Basic", ChallengeData::Params(control)).is_err());
}

#[test]
fn scheme_and_param_lookups_ignore_case() {
    let challenges = parse(r#"BASIC REALM="x""#).expect("valid");
    assert!(challenges[0].is_scheme("basic"));
    assert_eq!(challenges[0].param("realm"), Some("x"));
    assert_eq!(challenges[0].param("charset"), None);
}

#[test]
fn header_map_lines_are_parsed_in_order() {
    let mut headers = HeaderMap::new();
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="x""#),
    );
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Digest realm="t", Basic realm="x""#),
    );
    let challenges = parse_headers(&headers).expect("valid");
    assert_eq!(
        observed(&challenges),
        vec![
            p("Bearer", &[("realm", "x")]),
            p("Digest", &[("realm", "t")]),
            p("Basic", &[("realm", "x")]),
        ]
    );
}

#[test]
fn header_map_error_names_the_line_and_offset() {
    let mut headers = HeaderMap::new();
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="x""#),
    );
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Basic realm="x"#),
    );
    let error = parse_headers(&headers).expect_err("second line is unterminated");
    assert_eq!(error.line(), Some(1));
    assert_eq!(error.offset(), 12);
    assert_eq!(error.kind(), ParseErrorKind::UnterminatedQuote);
    assert_eq!(
        error.to_string(),
        "WWW-Authenticate line 2: unterminated quoted-string at byte 12 (found '\"')"
    );
}

#[test]
fn non_utf8_header_bytes_are_an_error_with_offset() {
    let mut headers = HeaderMap::new();
    let value =
        HeaderValue::from_bytes(b"Basic realm=\"\xff\"").expect("obs-text is a valid header byte");
    headers.append(WWW_AUTHENTICATE, value);
    let error = parse_headers(&headers).expect_err("not UTF-8");
    assert_eq!(error.kind(), ParseErrorKind::InvalidUtf8);
    assert_eq!(error.offset(), 13);
}

#[test]
fn arbitrary_bytes_never_panic() {
    // Every prefix of every case, plus each case with each byte dropped.
    for (input, _) in table() {
        for end in (0..=input.len()).filter(|&i| input.is_char_boundary(i)) {
            let _ = parse(&input[..end]);
        }
        for skip in (0..input.len()).filter(|&i| input.is_char_boundary(i)) {
            let mut s = input.to_owned();
            s.remove(skip);
            let _ = parse(&s);
        }
    }
}

//! The property of the `redact_body` fuzz target, shared with `tests/redaction_property.rs`
//! (which drives it with pseudo-random bytes in every test run): for JSON, form and XML bodies
//! built from arbitrary bytes, with a planted secret value under secret-named fields, redaction
//! never panics and the planted value never survives in what it shows. Bodies are mostly
//! well-formed (they must then be shown, not withheld), sometimes deliberately broken, and
//! sometimes the raw bytes themselves.

use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use provproxy::config::TracePlan;
use provproxy::trace::record::{
    Actions, CapturedBody, ExchangeRecord, RequestPart, ResponsePart, Role, Timings,
};
use provproxy::trace::redact::{BodyContent, RedactedBody};
use provproxy::trace::Redactor;

/// The planted value. Free text is drawn from an alphabet without `Z`, so only planting puts it
/// in a body.
pub const CANARY: &str = "ZqCanaryZq";

/// Field names that hold a secret, as targets spell them.
const SECRET_NAMES: &[&str] = &[
    "password",
    "PASSWORD",
    "user_password",
    "newPassword",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:password",
    "urn:ietf:params:scim:schemas:core:2.0:User:code",
    "sessionToken",
    "activationToken",
    "client_assertion",
    "client_secret",
    "code",
    "Sig",
    "signature",
    "x-api-key",
    "api_key",
    "apiKey",
    "passwd",
    "credentials",
    "redactMeToo",
];

/// Names that are not secrets (some look close).
const PLAIN_NAMES: &[&str] = &[
    "userName", "id", "value", "path", "op", "name", "key", "active", "emails", "codes", "sign",
    "pass", "word", "type", "x", "",
];

/// What free text is made of: no `Z`, and the characters that need escaping somewhere.
const ALPHABET: &[char] = &[
    'a',
    'b',
    'p',
    's',
    'w',
    'o',
    'r',
    'd',
    'Y',
    '0',
    '7',
    ' ',
    '"',
    '\'',
    '\\',
    '/',
    '<',
    '>',
    '&',
    ';',
    ':',
    '=',
    '%',
    '+',
    '#',
    '?',
    '[',
    ']',
    '{',
    '}',
    ',',
    '-',
    '_',
    '.',
    '\n',
    '\t',
    'é',
    '\u{1F600}',
    '\u{1}',
];

/// The configured `redact_fields` the property runs with, besides the built-in ones.
pub fn redactor() -> Redactor {
    let mut plan = TracePlan {
        har: None,
        jsonl: None,
        bodies: true,
        max_body: 1 << 20,
        redact_fields: provproxy::config::DEFAULT_REDACT_FIELDS
            .iter()
            .map(|f| f.to_string())
            .collect(),
        rotate_bytes: 0,
        keep: 0,
        channel_capacity: 1,
        queue_bytes: 1 << 20,
        recent: 0,
        auth_headers: Vec::new(),
        raw_body_routes: Vec::new(),
    };
    plan.redact_fields.push("redactme".into());
    Redactor::new(&plan)
}

/// Reads choices from the fuzzer's bytes; zeros once they run out.
struct Gen<'a> {
    data: &'a [u8],
    pos: usize,
    /// Planted at least once.
    planted: bool,
    /// Broken on purpose: may be withheld.
    broken: bool,
}

impl Gen<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    fn chance(&mut self, one_in: u8) -> bool {
        self.byte() % one_in == 0
    }

    fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
        from[self.below(from.len())]
    }

    fn text(&mut self) -> String {
        let len = self.below(6);
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())])
            .collect()
    }

    fn secret_name(&mut self) -> &'static str {
        self.planted = true;
        self.pick(SECRET_NAMES)
    }

    fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }

    // JSON --------------------------------------------------------------------------------

    fn json_string(&mut self, text: &str, out: &mut String) {
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                // Sometimes a plain letter as an escape: a key must be matched by what it
                // decodes to.
                c if c.is_ascii_alphabetic() && self.chance(8) => {
                    out.push_str(&format!("\\u{:04X}", c as u32))
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn json_value(&mut self, depth: u32, out: &mut String) {
        if self.exhausted() || depth > 6 {
            return self.json_string("", out);
        }
        match self.below(9) {
            0 | 1 => {
                out.push('{');
                let members = self.below(4);
                for i in 0..members {
                    if i > 0 {
                        out.push(',');
                    }
                    self.json_member(depth, out);
                }
                out.push('}');
            }
            2 => {
                out.push('[');
                for i in 0..self.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    self.json_value(depth + 1, out);
                }
                out.push(']');
            }
            3 => out.push_str(["1", "-2.5e3", "0", "true", "false", "null"][self.below(6)]),
            4 => {
                // A SCIM patch operation whose path names a secret.
                let name = self.secret_name();
                let (path, value) = (
                    format!(r#""path":"{name}""#),
                    format!(r#""value":"{CANARY}""#),
                );
                if self.chance(2) {
                    out.push_str(&format!(r#"{{"op":"replace",{path},{value}}}"#));
                } else {
                    out.push_str(&format!(r#"{{{value},"op":"replace",{path}}}"#));
                }
            }
            5 if self.chance(4) => {
                // Broken on purpose.
                self.broken = true;
                out.push_str(["{", "]", "\"", "01", ",", "\\x", "{\"a\" 1}"][self.below(7)]);
            }
            _ => {
                let text = self.text();
                self.json_string(&text, out);
            }
        }
    }

    fn json_member(&mut self, depth: u32, out: &mut String) {
        if self.chance(3) {
            let name = self.secret_name();
            self.json_string(name, out);
            out.push(':');
            self.json_secret(depth, out);
        } else {
            let name = if self.chance(2) {
                self.pick(PLAIN_NAMES).to_owned()
            } else {
                self.text()
            };
            self.json_string(&name, out);
            out.push(':');
            self.json_value(depth + 1, out);
        }
    }

    /// The canary as a value, or somewhere inside one.
    fn json_secret(&mut self, depth: u32, out: &mut String) {
        match self.below(4) {
            0 => out.push_str(&format!(r#"{{"a":[1,"{CANARY}"]}}"#)),
            1 => out.push_str(&format!(r#"["{CANARY}"]"#)),
            2 if depth < 6 => {
                out.push_str(&format!(r#"{{"inner":"{CANARY}","#));
                self.json_member(depth + 1, out);
                out.push('}');
            }
            _ => out.push_str(&format!(r#""{CANARY}""#)),
        }
    }

    // Forms -------------------------------------------------------------------------------

    fn form_part(&mut self, text: &str, out: &mut String) {
        for c in text.chars() {
            match c {
                ' ' if self.chance(2) => out.push('+'),
                c if c.is_ascii_alphanumeric() && !self.chance(8) => out.push(c),
                c => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("%{b:02X}"));
                    }
                }
            }
        }
    }

    fn form(&mut self) -> String {
        let mut out = String::new();
        for i in 0..1 + self.below(5) {
            if i > 0 {
                out.push('&');
            }
            if self.chance(3) {
                let name = self.secret_name();
                self.form_part(name, &mut out);
                out.push('=');
                out.push_str(CANARY);
            } else {
                let (name, value) = (self.text(), self.text());
                self.form_part(&name, &mut out);
                if !self.chance(6) {
                    out.push('=');
                }
                self.form_part(&value, &mut out);
            }
        }
        out
    }

    // XML ---------------------------------------------------------------------------------

    fn xml_text(&mut self, text: &str, out: &mut String) {
        for c in text.chars() {
            match c {
                '<' => out.push_str("&lt;"),
                '&' => out.push_str(["&amp;", "&#38;", "&#x26;"][self.below(3)]),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&apos;"),
                '>' => out.push_str("&gt;"),
                '\u{1}' => out.push_str("&#x9;"),
                c => out.push(c),
            }
        }
    }

    fn xml_name(&mut self) -> String {
        let name = self.pick(&[
            "a",
            "ns1:user",
            "Body",
            "value",
            "x.y-z",
            "é",
            "soap:Envelope",
        ]);
        name.to_owned()
    }

    fn xml_element(&mut self, depth: u32, out: &mut String) {
        let secret = self.chance(3);
        let name = if secret {
            let name = self.secret_name();
            // A namespace prefix is not part of the name that is matched.
            let prefix = self.pick(&["", "wsse:", "ns1:"]);
            format!("{prefix}{}", name.rsplit(':').next().unwrap_or(name))
        } else {
            self.xml_name()
        };
        out.push('<');
        out.push_str(&name);
        let mut names_secret = false;
        let mut used: Vec<&str> = Vec::new();
        for i in 0..self.below(3) {
            out.push(' ');
            match self.below(4) {
                0 => {
                    let attr = self.secret_name();
                    let attr = attr.rsplit(':').next().unwrap_or(attr);
                    if used.contains(&attr) {
                        out.push_str(&format!("plain{i}=''"));
                    } else {
                        used.push(attr);
                        out.push_str(&format!("{attr}=\"{CANARY}\""));
                    }
                }
                1 if !names_secret => {
                    // `<entry key="password" value="...">`: the value and content are secret.
                    names_secret = true;
                    let which = self.pick(&["name", "key"]);
                    let secret = self.secret_name().to_owned();
                    out.push_str(&format!("{which}=\""));
                    // An escaped letter still names the secret.
                    let mut chars = secret.chars();
                    if let Some(first) = chars.next() {
                        out.push_str(&format!("&#{};", first as u32));
                    }
                    out.push_str(chars.as_str());
                    out.push_str(&format!("\" value='{CANARY}'"));
                }
                _ => {
                    let value = self.text();
                    out.push_str(&format!("plain{i}=\""));
                    self.xml_text(&value, out);
                    out.push('"');
                }
            }
        }
        if self.chance(5) {
            out.push_str("/>");
            return;
        }
        out.push('>');
        let hidden = secret || names_secret;
        for _ in 0..self.below(4) {
            if self.exhausted() || depth > 6 {
                break;
            }
            match self.below(8) {
                0 | 1 => self.xml_element(depth + 1, out),
                2 if hidden => out.push_str(CANARY),
                3 if hidden => out.push_str(&format!("<![CDATA[{CANARY}]]>")),
                4 => out.push_str(["<!-- c -->", "<?pi x?>", "<![CDATA[<a>&]]>"][self.below(3)]),
                5 if self.chance(4) => {
                    self.broken = true;
                    out.push_str(
                        ["<", "&", "&bogus;", "]]>", "</q>", "<a", "<!DOCTYPE a>"][self.below(7)],
                    );
                }
                _ => {
                    let text = self.text();
                    self.xml_text(&text, out);
                }
            }
        }
        if hidden && self.chance(2) {
            out.push_str(CANARY);
        }
        out.push_str("</");
        out.push_str(&name);
        out.push('>');
    }

    fn xml(&mut self) -> String {
        let mut out = String::new();
        if self.chance(2) {
            out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        }
        self.xml_element(0, &mut out);
        out
    }
}

/// Runs the property on one input.
pub fn check(redactor: &Redactor, data: &[u8]) {
    let mut gen = Gen {
        data,
        pos: 0,
        planted: false,
        broken: false,
    };
    let kind = gen.below(5);
    let (body, content_type, query) = match kind {
        0 => {
            let mut out = String::new();
            gen.json_value(0, &mut out);
            let ct = gen.pick(&[
                "application/json",
                "application/scim+json; charset=utf-8",
                "",
            ]);
            (out.into_bytes(), ct, String::new())
        }
        1 => {
            let form = gen.form();
            let query = gen.form();
            let ct = gen.pick(&["application/x-www-form-urlencoded", ""]);
            (form.into_bytes(), ct, query)
        }
        2 => {
            let xml = gen.xml();
            let ct = gen.pick(&[
                "text/xml; charset=utf-8",
                "application/soap+xml",
                "application/samlassertion+xml",
                "",
            ]);
            (xml.into_bytes(), ct, String::new())
        }
        _ => {
            // The raw bytes under any type: nothing is planted, nothing may panic.
            gen.broken = true;
            let ct = gen.pick(&[
                "application/json",
                "application/x-www-form-urlencoded",
                "application/xml",
                "text/plain",
                "",
            ]);
            let rest = data.get(gen.pos..).unwrap_or_default().to_vec();
            (rest, ct, String::new())
        }
    };
    let role = if gen.chance(4) {
        Role::TokenFetch
    } else {
        Role::Client
    };
    let record = record(&body, content_type, &query, role);
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let out = redactor.redact(&record);
    let planted = gen.planted || query.contains(CANARY);
    let shown = [
        out.request.url.to_string(),
        format!("{:?}", out.request.query),
        format!("{:?}", out.request.headers),
    ];
    for text in &shown {
        assert!(
            !planted || !text.contains(CANARY),
            "the planted value survived in {text:?}"
        );
    }
    // A well-formed body of a declared type that can be redacted must be shown, not withheld;
    // a token endpoint's is shown only when it is JSON or a form.
    let must_show = !gen.broken && !content_type.is_empty() && (role == Role::Client || kind != 2);
    let bodies = [
        out.request.body.as_ref(),
        out.response.as_ref().and_then(|r| r.body.as_ref()),
    ];
    for body in bodies.into_iter().flatten() {
        check_body(body, &body_text, planted, must_show);
    }
}

fn check_body(body: &RedactedBody<'_>, input: &str, planted: bool, must_show: bool) {
    let shown = match &body.content {
        BodyContent::Text(text) => text.to_string(),
        BodyContent::Base64(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_else(|e| panic!("invalid base64 {b64:?}: {e}"));
            String::from_utf8_lossy(&bytes).into_owned()
        }
        BodyContent::Omitted(why) => {
            assert!(!must_show, "withheld ({why}): {input:?}");
            return;
        }
    };
    assert!(
        !planted || !shown.contains(CANARY),
        "the planted value survived: {shown:?}"
    );
}

fn record(body: &[u8], content_type: &str, query: &str, role: Role) -> ExchangeRecord {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        if !content_type.is_empty() {
            headers.insert(http::header::CONTENT_TYPE, value);
        }
    }
    let captured = CapturedBody {
        bytes: Bytes::copy_from_slice(body),
        total_size: body.len() as u64,
        truncated: false,
    };
    let mut url = "https://target.example/api".to_owned();
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    ExchangeRecord {
        id: 1,
        parent: None,
        role,
        started: SystemTime::UNIX_EPOCH,
        timings: Timings::default(),
        client_addr: None,
        client_name: None,
        route: Some("r".into()),
        session_key: None,
        request: RequestPart {
            method: Method::POST,
            url,
            version: Version::HTTP_11,
            headers: headers.clone(),
            body: Some(captured.clone()),
        },
        response: Some(ResponsePart {
            status: StatusCode::OK,
            version: Version::HTTP_11,
            headers,
            body: Some(captured),
        }),
        actions: Actions::default(),
        error: None,
    }
}

//! XML bodies (SOAP included) redacted in one pass over their text, without building a tree.
//!
//! As with JSON, the body is kept byte for byte and only secret values are replaced by
//! `[REDACTED]`:
//! - the content of an element whose name is a secret field (`<password>`, `<wsse:Password>`,
//!   `<UsernameToken>`, children included);
//! - the value of an attribute whose name is one (`password="..."`);
//! - the `value` attribute and the content of an element whose `name` or `key` attribute names
//!   a secret (`<entry key="password" value="..."/>`, `<Attribute name="password">...`: how
//!   SailPoint and many provisioning APIs write attribute maps), like a SCIM patch operation.
//!
//! Names are matched by their local part (after the namespace prefix). The scanner accepts
//! well-formed XML 1.0 only, checked as strictly as a conforming parser checks it: one root,
//! balanced and matching tags, quoted and unique attributes, the five predefined entities and
//! valid character references, no `]]>` in text, well-formed comments, CDATA sections and
//! processing instructions, XML characters only. It refuses a document type declaration (a DTD
//! can declare entities and default attributes that a reader would expand and this pass would
//! not see) and any declared encoding but UTF-8, US-ASCII and ISO-8859-1 (under UTF-7, say, a
//! reader sees elements where this pass sees text). Whatever it refuses, the caller withholds.
//! (Its one leniency: any non-ASCII character is accepted in a name.)

use std::borrow::Cow;

use super::redact::{Redactor, REDACTED};

/// The body is not XML that could be redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// `text` with its secret values replaced; borrowed when nothing was.
pub fn redact<'a>(text: &'a str, redactor: &Redactor) -> Result<Cow<'a, str>, Invalid> {
    if !only_xml_chars(text) {
        return Err(Invalid);
    }
    let mut scan = Scan {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        out: String::new(),
        copied: 0,
        redactor,
        open: Vec::new(),
        attrs: Vec::new(),
        hidden: false,
    };
    scan.document()?;
    if scan.out.is_empty() {
        return Ok(Cow::Borrowed(text));
    }
    scan.out.push_str(&text[scan.copied..]);
    Ok(Cow::Owned(scan.out))
}

/// Whether `bytes` is one XML document that [`redact`] accepts.
pub fn is_xml(bytes: &[u8], redactor: &Redactor) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|text| redact(text, redactor).is_ok())
}

/// XML 1.0's `Char`: no control character but tab, LF and CR, and neither U+FFFE nor U+FFFF
/// (a `str` holds no surrogates).
fn only_xml_chars(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().all(|(at, &b)| match b {
        b'\t' | b'\n' | b'\r' => true,
        0..=0x1f => false,
        // U+FFFE and U+FFFF are EF BF BE and EF BF BF in UTF-8.
        0xef => {
            !(bytes.get(at + 1) == Some(&0xbf) && matches!(bytes.get(at + 2), Some(0xbe | 0xbf)))
        }
        _ => true,
    })
}

struct Scan<'a, 'r> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// The redacted text up to `copied`; empty until the first replacement.
    out: String,
    copied: usize,
    redactor: &'r Redactor,
    /// The elements open at `pos`, outermost first.
    open: Vec<Open<'a>>,
    /// The attributes of the tag being read; kept to reuse its allocation.
    attrs: Vec<Attr>,
    /// Inside an element whose content is replaced whole: nothing in it is looked at.
    hidden: bool,
}

struct Open<'a> {
    name: &'a str,
    /// Where its content starts.
    content: usize,
    /// Whether its content is replaced at its end tag.
    redact: bool,
}

/// An attribute's name and its value inside the quotes, as byte ranges.
#[derive(Debug, Clone, Copy)]
struct Attr {
    name: (usize, usize),
    value: (usize, usize),
}

impl<'a> Scan<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at(&self, prefix: &str) -> bool {
        self.bytes[self.pos..].starts_with(prefix.as_bytes())
    }

    fn expect(&mut self, prefix: &str) -> Result<(), Invalid> {
        if !self.at(prefix) {
            return Err(Invalid);
        }
        self.pos += prefix.len();
        Ok(())
    }

    /// Skips whitespace; whether there was any.
    fn whitespace(&mut self) -> bool {
        let start = self.pos;
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.peek() {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Replaces `start..end` of the input with the redaction mark.
    fn replace(&mut self, start: usize, end: usize) {
        if start == end {
            return;
        }
        self.out.push_str(&self.text[self.copied..start]);
        self.out.push_str(REDACTED);
        self.copied = end;
    }

    fn document(&mut self) -> Result<(), Invalid> {
        if self.at("\u{feff}") {
            self.pos += 3;
        }
        if self.at("<?xml")
            && matches!(
                self.bytes.get(self.pos + 5),
                Some(b' ' | b'\t' | b'\r' | b'\n')
            )
        {
            self.declaration()?;
        }
        self.misc()?;
        if self.at("<!") {
            // A document type declaration, or anything else that is not the root.
            return Err(Invalid);
        }
        self.expect("<")?;
        self.start_tag()?;
        while !self.open.is_empty() {
            self.content()?;
        }
        self.misc()?;
        if self.pos != self.bytes.len() {
            return Err(Invalid);
        }
        Ok(())
    }

    /// `<?xml version="1.0" encoding="..." standalone="..."?>`, refusing encodings under which
    /// the bytes would read differently.
    fn declaration(&mut self) -> Result<(), Invalid> {
        self.pos += "<?xml".len();
        let mut version = false;
        loop {
            let spaced = self.whitespace();
            if self.at("?>") {
                self.pos += 2;
                return if version { Ok(()) } else { Err(Invalid) };
            }
            if !spaced {
                return Err(Invalid);
            }
            let (name, value) = self.pseudo_attribute()?;
            match name {
                "version" if !version && value.starts_with("1.") => version = true,
                "encoding"
                    if version
                        && ["utf-8", "us-ascii", "ascii", "iso-8859-1", "latin1"]
                            .iter()
                            .any(|e| e.eq_ignore_ascii_case(value)) => {}
                "standalone" if version && matches!(value, "yes" | "no") => {}
                _ => return Err(Invalid),
            }
        }
    }

    fn pseudo_attribute(&mut self) -> Result<(&'a str, &'a str), Invalid> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        let name = &self.text[start..self.pos];
        self.whitespace();
        self.expect("=")?;
        self.whitespace();
        let quote = self
            .peek()
            .filter(|q| matches!(q, b'"' | b'\''))
            .ok_or(Invalid)?;
        self.pos += 1;
        let value_start = self.pos;
        let len = self.bytes[self.pos..]
            .iter()
            .position(|&b| b == quote)
            .ok_or(Invalid)?;
        self.pos += len + 1;
        Ok((name, &self.text[value_start..value_start + len]))
    }

    /// Whitespace, comments and processing instructions, before or after the root.
    fn misc(&mut self) -> Result<(), Invalid> {
        loop {
            self.whitespace();
            if self.at("<!--") {
                self.comment()?;
            } else if self.at("<?") {
                self.instruction()?;
            } else {
                return Ok(());
            }
        }
    }

    /// `<!-- ... -->`: no `--` inside.
    fn comment(&mut self) -> Result<(), Invalid> {
        self.pos += "<!--".len();
        let len = find(&self.bytes[self.pos..], b"--").ok_or(Invalid)?;
        self.pos += len + 2;
        self.expect(">")
    }

    /// `<?target ...?>`; the target is not `xml` in any case (that is the declaration, and only
    /// at the very start).
    fn instruction(&mut self) -> Result<(), Invalid> {
        self.pos += "<?".len();
        let target = self.name()?;
        if target.eq_ignore_ascii_case("xml") {
            return Err(Invalid);
        }
        if self.at("?>") {
            self.pos += 2;
            return Ok(());
        }
        if !self.whitespace() {
            return Err(Invalid);
        }
        let len = find(&self.bytes[self.pos..], b"?>").ok_or(Invalid)?;
        self.pos += len + 2;
        Ok(())
    }

    /// One piece of an open element's content: text, a child's start tag, an end tag, a
    /// comment, a CDATA section or a processing instruction.
    fn content(&mut self) -> Result<(), Invalid> {
        match self.peek() {
            None => Err(Invalid),
            Some(b'<') => {
                if self.at("</") {
                    self.end_tag()
                } else if self.at("<!--") {
                    self.comment()
                } else if self.at("<![CDATA[") {
                    self.pos += "<![CDATA[".len();
                    let len = find(&self.bytes[self.pos..], b"]]>").ok_or(Invalid)?;
                    self.pos += len + 3;
                    Ok(())
                } else if self.at("<?") {
                    self.instruction()
                } else {
                    self.pos += 1;
                    self.start_tag()
                }
            }
            Some(_) => self.text(),
        }
    }

    /// Character data up to the next `<`: references checked, no `]]>`.
    fn text(&mut self) -> Result<(), Invalid> {
        loop {
            match self.peek() {
                None | Some(b'<') => return Ok(()),
                Some(b'&') => self.reference()?,
                Some(b']') if self.at("]]>") => return Err(Invalid),
                Some(_) => self.pos += 1,
            }
        }
    }

    /// `&name;` for one of the five predefined entities, or a character reference to an XML
    /// character.
    fn reference(&mut self) -> Result<(), Invalid> {
        let (len, _) = reference(&self.bytes[self.pos..]).ok_or(Invalid)?;
        self.pos += len;
        Ok(())
    }

    /// `Name`: a start character, then name characters. Any non-ASCII character counts as both.
    fn name(&mut self) -> Result<&'a str, Invalid> {
        let start = self.pos;
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || matches!(b, b'_' | b':') || b >= 0x80 => {}
            _ => return Err(Invalid),
        }
        while self.peek().is_some_and(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-' | b'.') || b >= 0x80
        }) {
            self.pos += 1;
        }
        // Only ASCII bytes end a name, so this is on a character boundary.
        Ok(&self.text[start..self.pos])
    }

    /// After `<`: the name, the attributes, then `>` (the element opens) or `/>`.
    fn start_tag(&mut self) -> Result<(), Invalid> {
        let name = self.name()?;
        self.attrs.clear();
        let empty = loop {
            let spaced = self.whitespace();
            if self.at("/>") {
                self.pos += 2;
                break true;
            }
            if self.at(">") {
                self.pos += 1;
                break false;
            }
            if !spaced {
                return Err(Invalid);
            }
            let attr = self.attribute()?;
            let attr_name = &self.bytes[attr.name.0..attr.name.1];
            if self
                .attrs
                .iter()
                .any(|a| &self.bytes[a.name.0..a.name.1] == attr_name)
            {
                return Err(Invalid);
            }
            self.attrs.push(attr);
        };
        let redact = !self.hidden && self.redact_attributes(name);
        if !empty {
            self.open.push(Open {
                name,
                content: self.pos,
                redact,
            });
            self.hidden |= redact;
        }
        Ok(())
    }

    /// `name = "value"` or with single quotes: no `<` in the value, references checked.
    fn attribute(&mut self) -> Result<Attr, Invalid> {
        let start = self.pos;
        self.name()?;
        let name = (start, self.pos);
        self.whitespace();
        self.expect("=")?;
        self.whitespace();
        let quote = self
            .peek()
            .filter(|q| matches!(q, b'"' | b'\''))
            .ok_or(Invalid)?;
        self.pos += 1;
        let value_start = self.pos;
        loop {
            match self.peek() {
                None | Some(b'<') => return Err(Invalid),
                Some(b'&') => self.reference()?,
                Some(q) if q == quote => break,
                Some(_) => self.pos += 1,
            }
        }
        let value = (value_start, self.pos);
        self.pos += 1;
        Ok(Attr { name, value })
    }

    /// Replaces the values of the tag's secret attributes; whether the element's content is
    /// secret too.
    fn redact_attributes(&mut self, element: &str) -> bool {
        let text = self.text;
        let named_secret = self.attrs.iter().any(|a| {
            let name = local(&text[a.name.0..a.name.1]);
            (name.eq_ignore_ascii_case("name") || name.eq_ignore_ascii_case("key"))
                && self.is_secret(&decode(&text[a.value.0..a.value.1]))
        });
        for i in 0..self.attrs.len() {
            let Attr { name, value } = self.attrs[i];
            let name = &text[name.0..name.1];
            if self.is_secret(name) || (named_secret && local(name).eq_ignore_ascii_case("value")) {
                self.replace(value.0, value.1);
            }
        }
        named_secret || self.is_secret(element)
    }

    /// Whether an element or attribute of this qualified name holds a secret.
    fn is_secret(&self, name: &str) -> bool {
        self.redactor.is_secret_field(local(name))
    }

    /// `</name>` closing the innermost open element; its content is replaced when it is secret.
    fn end_tag(&mut self) -> Result<(), Invalid> {
        let tag = self.pos;
        self.pos += "</".len();
        let name = self.name()?;
        self.whitespace();
        self.expect(">")?;
        let open = self.open.pop().ok_or(Invalid)?;
        if open.name != name {
            return Err(Invalid);
        }
        if open.redact {
            self.replace(open.content, tag);
            self.hidden = false;
        }
        Ok(())
    }
}

/// The local part of a qualified name: `wsse:Password` → `Password`.
fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// The byte offset of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The reference at the start of `bytes` (which starts with `&`): its length and the character
/// it stands for.
fn reference(bytes: &[u8]) -> Option<(usize, char)> {
    let end = bytes.iter().take(16).position(|&b| b == b';')?;
    let body = std::str::from_utf8(&bytes[1..end]).ok()?;
    let c = match body {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => {
            let number = body.strip_prefix('#')?;
            let code = match number.strip_prefix('x') {
                Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    u32::from_str_radix(hex, 16).ok()?
                }
                None if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
                    number.parse().ok()?
                }
                _ => return None,
            };
            let c = char::from_u32(code)?;
            let xml_char = matches!(c, '\t' | '\n' | '\r')
                || (c >= ' ' && !matches!(c, '\u{fffe}' | '\u{ffff}'));
            xml_char.then_some(c)?
        }
    };
    Some((end + 1, c))
}

/// An attribute value with its references expanded (already checked by the scan).
fn decode(value: &str) -> Cow<'_, str> {
    if !value.contains('&') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        match reference(&rest.as_bytes()[amp..]) {
            Some((len, c)) => {
                out.push(c);
                rest = &rest[amp + len..];
            }
            None => {
                out.push('&');
                rest = &rest[amp + 1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::with_default_fields()
    }

    fn redacted(text: &str) -> String {
        redact(text, &redactor())
            .unwrap_or_else(|_| panic!("refused {text:?}"))
            .into_owned()
    }

    #[test]
    fn a_document_without_secrets_is_kept_byte_for_byte_and_not_copied() {
        let doc = concat!(
            "\u{feff}<?xml version='1.0' encoding=\"utf-8\" standalone='yes'?>\n",
            "<!-- head --><?app x?>\n",
            "<a:root xmlns:a=\"urn:x\" b = 'c&amp;d&#x41;&#66;'>text &lt;x&gt; é",
            "<![CDATA[<password>raw</password>]]><empty/><n.x-y attr=\"&quot;\"></n.x-y>",
            "</a:root >\n<!-- tail -->\n"
        );
        assert!(matches!(redact(doc, &redactor()), Ok(Cow::Borrowed(d)) if d == doc));
    }

    #[test]
    fn secret_elements_lose_their_content_and_secret_attributes_their_value() {
        assert_eq!(
            redacted(
                r#"<u><name>bob</name><password>p1</password><ns:Password a="1">p2</ns:Password></u>"#
            ),
            r#"<u><name>bob</name><password>[REDACTED]</password><ns:Password a="1">[REDACTED]</ns:Password></u>"#
        );
        assert_eq!(
            redacted(r#"<login user="bob" password='p1' x:api_key="k" code="c"/>"#),
            r#"<login user="bob" password='[REDACTED]' x:api_key="[REDACTED]" code="[REDACTED]"/>"#
        );
        // Children, comments and CDATA of a secret element go with it.
        assert_eq!(
            redacted(
                "<a><credentials><u>bob</u><!-- c --><p><![CDATA[p1]]></p></credentials><b/></a>"
            ),
            "<a><credentials>[REDACTED]</credentials><b/></a>"
        );
        assert_eq!(
            redacted("<a><password/><password></password></a>"),
            "<a><password/><password></password></a>"
        );
    }

    #[test]
    fn an_element_named_secret_by_its_name_or_key_attribute_loses_its_value() {
        assert_eq!(
            redacted(
                r#"<m><entry key="password" value="p1"/><entry value="p2" key="pass&#119;ord"/><entry key="id" value="7"/></m>"#
            ),
            r#"<m><entry key="password" value="[REDACTED]"/><entry value="[REDACTED]" key="pass&#119;ord"/><entry key="id" value="7"/></m>"#
        );
        assert_eq!(
            redacted(
                r#"<Attribute name="urn:ietf:params:scim:schemas:core:2.0:User:password"><Value>p1</Value></Attribute>"#
            ),
            r#"<Attribute name="urn:ietf:params:scim:schemas:core:2.0:User:password">[REDACTED]</Attribute>"#
        );
    }

    #[test]
    fn what_a_conforming_parser_refuses_is_refused() {
        let refused = [
            "",
            "   ",
            "text",
            "<a>",
            "<a></b>",
            "<a><b></a></b>",
            "<a/><b/>",
            "<a/>text",
            "<a x='1' x='2'/>",
            "<a x=1/>",
            "<a x='<'/>",
            "<a x='&'/>",
            "<ax='1'/>",
            "<a x='1'y='2'/>",
            "<a>&nbsp;</a>",
            "<a>&#0;</a>",
            "<a>&#xFFFE;</a>",
            "<a>&#xD800;</a>",
            "<a>&#x;</a>",
            "<a>& b</a>",
            "<a>]]></a>",
            "<a>\u{1}</a>",
            "<a>\u{ffff}</a>",
            "<a><!-- a -- b --></a>",
            "<a><!-- a ---></a>",
            "<a><![CDATA[x]></a>",
            "<a><?xml version='1.0'?></a>",
            "<a><?pi</a>",
            "<!DOCTYPE a [<!ENTITY p 'password'>]><a>&p;</a>",
            "<a><!DOCTYPE a></a>",
            " <?xml version='1.0'?><a/>",
            "<?xml version='1.0' encoding='UTF-7'?><a/>",
            "<?xml version='1.0' encoding='UTF-16'?><a/>",
            "<?xml encoding='UTF-8'?><a/>",
            "<?xml version='1.0'standalone='yes'?><a/>",
            "<1a/>",
            "<-a/>",
            "< a/>",
            "<a></ a>",
            "<a/ >",
            "<![CDATA[x]]><a/>",
        ];
        for doc in refused {
            assert!(redact(doc, &redactor()).is_err(), "accepted {doc:?}");
        }
        let accepted = [
            "<a/>",
            "<a></a >",
            "<?xml version=\"1.0\"?><a/>",
            "<?xml version='1.1' encoding='ISO-8859-1'?><a/>",
            "<a><!----></a>",
            "<a><?pi?></a>",
            "<a>&#x10FFFF;&#9;]]</a>",
            "<é:ü ä='1'/>",
            "<_:a-b.c/>",
        ];
        for doc in accepted {
            assert!(redact(doc, &redactor()).is_ok(), "refused {doc:?}");
        }
    }
}

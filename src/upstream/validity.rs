//! The validity period of an X.509 certificate, read from its DER. webpki checks validity only
//! while it builds a path, and a certificate trusted as it is (see `trust`) has no path to
//! build, so the two dates are read here: just enough DER for `tbsCertificate.validity`.

use rustls_pki_types::UnixTime;

/// `notBefore` and `notAfter`, as seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: u64,
    pub not_after: u64,
}

impl Validity {
    /// The validity of a DER certificate; `None` when it cannot be read.
    pub fn of(cert: &[u8]) -> Option<Validity> {
        let (certificate, _) = expect(cert, SEQUENCE)?;
        let (mut tbs, _) = expect(certificate, SEQUENCE)?;
        // version [0] EXPLICIT is optional (absent means v1).
        if tbs.first() == Some(&VERSION) {
            tbs = element(tbs)?.2;
        }
        let (_, _, rest) = element(tbs)?; // serialNumber
        let (_, _, rest) = element(rest)?; // signature
        let (_, _, rest) = element(rest)?; // issuer
        let (validity, _) = expect(rest, SEQUENCE)?;
        let (tag, not_before, rest) = element(validity)?;
        let not_before = time(tag, not_before)?;
        let (tag, not_after, _) = element(rest)?;
        let not_after = time(tag, not_after)?;
        Some(Validity {
            not_before,
            not_after,
        })
    }

    pub fn contains(&self, now: UnixTime) -> bool {
        (self.not_before..=self.not_after).contains(&now.as_secs())
    }
}

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The contents of the element at the start of `der` if it has tag `tag`, and what follows it.
fn expect(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, contents, rest) = element(der)?;
    (found == tag).then_some((contents, rest))
}

/// Tag, contents and the rest of the input, for the DER element at the start of `der`.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits count the length bytes; four are plenty for a certificate.
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, rest)
    };
    if rest.len() < length {
        return None;
    }
    let (contents, rest) = rest.split_at(length);
    Some((tag, contents, rest))
}

/// RFC 5280 §4.1.2.5: `YYMMDDHHMMSSZ` (UTCTime, years 1950–2049) or `YYYYMMDDHHMMSSZ`.
fn time(tag: u8, text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<u16>().ok();
    let (year, rest) = match (tag, text.len()) {
        (UTC_TIME, 12) => {
            let short = number(0..2)?;
            (if short >= 50 { 1900 } else { 2000 } + short, 2)
        }
        (GENERALIZED_TIME, 14) => (number(0..4)?, 4),
        _ => return None,
    };
    let field = |index: usize| number(rest + 2 * index..rest + 2 * index + 2);
    let month = time::Month::try_from(u8::try_from(field(0)?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::from(year), month, u8::try_from(field(1)?).ok()?)
            .ok()?;
    let at = date
        .with_hms(
            u8::try_from(field(2)?).ok()?,
            u8::try_from(field(3)?).ok()?,
            u8::try_from(field(4)?).ok()?,
        )
        .ok()?
        .assume_utc()
        .unix_timestamp();
    u64::try_from(at).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("p");
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        params.self_signed(&key).expect("sign").der().to_vec()
    }

    fn unix(year: i32, month: u8, day: u8) -> u64 {
        let month = time::Month::try_from(month).expect("month");
        let date = time::Date::from_calendar_date(year, month, day).expect("date");
        u64::try_from(date.midnight().assume_utc().unix_timestamp()).expect("after 1970")
    }

    #[test]
    fn reads_utc_time_and_generalized_time_dates() {
        // rcgen writes UTCTime up to 2049 and GeneralizedTime from 2050 on, as RFC 5280 says.
        let der = certificate((2020, 1, 2), (2051, 3, 4));
        let validity = Validity::of(&der).expect("validity");
        assert_eq!(validity.not_before, unix(2020, 1, 2));
        assert_eq!(validity.not_after, unix(2051, 3, 4));
    }

    #[test]
    fn contains_is_true_only_inside_the_period() {
        let validity = Validity::of(&certificate((2020, 1, 1), (2030, 1, 1))).expect("validity");
        let at = |secs| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        assert!(validity.contains(at(unix(2025, 6, 1))));
        assert!(!validity.contains(at(unix(2019, 12, 31))));
        assert!(!validity.contains(at(unix(2030, 1, 2))));
    }

    #[test]
    fn truncated_or_foreign_input_is_none() {
        let der = certificate((2020, 1, 1), (2030, 1, 1));
        assert_eq!(Validity::of(&der[..40]), None);
        assert_eq!(Validity::of(b"not a certificate"), None);
        assert_eq!(Validity::of(&[]), None);
    }
}

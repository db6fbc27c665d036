//! Text forms of record values that both renderings of a record show, its start time and its
//! client's address: formatted once per record, on the stack, when the record is redacted.

use std::net::SocketAddr;
use std::time::SystemTime;

use serde::{Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A time as RFC 3339 in UTC, with as many fraction digits as it needs.
#[derive(Debug, Clone)]
pub struct Timestamp(Ascii<30>);

impl Timestamp {
    pub fn new(t: SystemTime) -> Self {
        Timestamp(rfc3339(t).unwrap_or_else(|| {
            let mut text = Ascii::default();
            let fallback = before_1970(t).unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned());
            fallback.bytes().for_each(|b| text.push(b));
            text
        }))
    }

    /// A timestamp as a trace shows it, read back (see [`super::from_lines`]): ASCII of at
    /// most 30 bytes, kept as it is.
    pub fn from_text(text: &str) -> Option<Self> {
        let mut ascii = Ascii::default();
        if !text.is_ascii() || text.len() > ascii.bytes.len() {
            return None;
        }
        text.bytes().for_each(|b| ascii.push(b));
        Some(Timestamp(ascii))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The text's bytes, all ASCII: what a renderer copies, without `as_str`'s UTF-8 check.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// `t` as the `time` crate writes it in RFC 3339 (`2023-11-14T22:13:20.1234Z`: UTC, trailing
/// zeros of the fraction cut), from 1970 to 9999. Done here on the stack because it runs twice
/// for every record, and the general formatter costs ten times as much.
fn rfc3339(t: SystemTime) -> Option<Ascii<30>> {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    let secs = since.as_secs();
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::clock::civil_date(days);
    if year > 9999 {
        return None;
    }
    let mut text = Ascii::default();
    text.digits(year, 4);
    text.push(b'-');
    text.digits(month, 2);
    text.push(b'-');
    text.digits(day, 2);
    text.push(b'T');
    text.digits(of_day / 3600, 2);
    text.push(b':');
    text.digits(of_day / 60 % 60, 2);
    text.push(b':');
    text.digits(of_day % 60, 2);
    let mut nanos = since.subsec_nanos();
    if nanos != 0 {
        let mut width = 9;
        while nanos % 10 == 0 {
            nanos /= 10;
            width -= 1;
        }
        text.push(b'.');
        text.digits(u64::from(nanos), width);
    }
    text.push(b'Z');
    Some(text)
}

/// A clock gone wrong, through the general formatter; `None` past its range (and past 9999,
/// which RFC 3339 cannot write), where `OffsetDateTime::from` would panic.
fn before_1970(t: SystemTime) -> Option<String> {
    let back = SystemTime::UNIX_EPOCH.duration_since(t).ok()?;
    let back = time::Duration::try_from(back).ok()?;
    OffsetDateTime::UNIX_EPOCH
        .checked_sub(back)?
        .format(&Rfc3339)
        .ok()
}

/// A socket address as its `Display` form: IPv4 written digit by digit, IPv6 (rare in a
/// trace) through `Display`.
#[derive(Debug, Clone)]
pub struct Addr(Ascii<MAX_ADDR>);

/// `[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535`
const MAX_ADDR: usize = 58;

impl Addr {
    pub fn new(addr: SocketAddr) -> Self {
        let mut text = Ascii::default();
        match addr {
            SocketAddr::V4(v4) => {
                for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    text.number(u64::from(octet));
                }
                text.push(b':');
                text.number(u64::from(v4.port()));
            }
            SocketAddr::V6(_) => addr.to_string().bytes().for_each(|b| text.push(b)),
        }
        Addr(text)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The text's bytes, all ASCII (see [`Timestamp::as_bytes`]).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Serialize for Addr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A short ASCII text on the stack; `N` is chosen to fit the longest text written.
#[derive(Debug, Clone)]
struct Ascii<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Ascii<N> {
    fn default() -> Self {
        Ascii {
            bytes: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Ascii<N> {
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// `n` in exactly `width` digits: zero-padded, or its last `width` digits.
    fn digits(&mut self, mut n: u64, width: usize) {
        let end = (self.len + width).min(N);
        for slot in self.bytes[self.len..end].iter_mut().rev() {
            // The remainder is below 10.
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.len = end;
    }

    fn number(&mut self, n: u64) {
        let width = n.checked_ilog10().map_or(1, |log| log as usize + 1);
        self.digits(n, width);
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::time::Duration;

    use super::*;

    fn json(value: &impl Serialize) -> String {
        serde_json::to_string(value).unwrap()
    }

    /// What the `time` crate writes; past its range, where `OffsetDateTime::from` would panic,
    /// the fallback.
    fn time_crate(t: SystemTime) -> String {
        let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        let text = time::Duration::try_from(since)
            .ok()
            .and_then(|d| OffsetDateTime::UNIX_EPOCH.checked_add(d))
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned());
        json(&text)
    }

    #[test]
    fn timestamps_are_written_as_the_time_crate_writes_them() {
        let mut rng = crate::trace::tests::Xorshift(0x853c_49e6_748f_ea9b);
        let mut random = move |below: u64| rng.next() % below;
        let last_second = 253_402_300_799; // 9999-12-31T23:59:59Z
        let mut times: Vec<Duration> = [
            0,
            951_782_400,   // 2000-02-29
            4_107_542_400, // 2100-03-01
            4_107_455_999, // 2100-02-28T23:59:59
            last_second,
            last_second + 1,
        ]
        .iter()
        .flat_map(|&s| [0, 1, 10, 999_999_999, 500_000_000].map(|n| Duration::new(s, n)))
        .collect();
        for _ in 0..20_000 {
            let nanos = match random(4) {
                0 => 0,
                1 => random(1000) as u32 * 1_000_000,
                _ => random(1_000_000_000) as u32,
            };
            times.push(Duration::new(random(last_second + 2), nanos));
        }
        for since in times {
            let t = SystemTime::UNIX_EPOCH + since;
            assert_eq!(json(&Timestamp::new(t)), time_crate(t), "{since:?}");
        }
        // Past what `time` can hold, where it would panic: the fallback.
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(json(&Timestamp::new(far)), r#""1970-01-01T00:00:00Z""#);
        let before = SystemTime::UNIX_EPOCH - Duration::new(86_401, 5);
        assert_eq!(
            json(&Timestamp::new(before)),
            r#""1969-12-30T23:59:58.999999995Z""#
        );
    }

    #[test]
    fn socket_addresses_are_written_as_display_writes_them() {
        let v4 = [
            ([0, 0, 0, 0], 0),
            ([127, 0, 0, 1], 40000),
            ([255, 255, 255, 255], 65535),
            ([10, 9, 100, 1], 9),
        ];
        for (ip, port) in v4 {
            let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port));
            assert_eq!(json(&Addr::new(addr)), json(&addr.to_string()));
        }
        let v6: SocketAddr = "[2001:db8::1%3]:443"
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 443)));
        assert_eq!(json(&Addr::new(v6)), json(&v6.to_string()));
    }
}

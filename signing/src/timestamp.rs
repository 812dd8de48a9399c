//! Timestamps: whole seconds in UTC, written `YYYY-MM-DDTHH:MM:SSZ`.
//!
//! One spelling per instant matters here: records and audit entries are signed over their
//! serialised form, so a time must serialise the same way every time it is read back.

use crate::error::SigningError;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// An instant in UTC with one-second resolution. The crate never reads the clock: callers pass
/// the time in (`Timestamp::from_system_time(SystemTime::now())` in the binary, fixed values in
/// tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

fn invalid() -> SigningError {
    SigningError::Invalid {
        field: "timestamp",
        why: "expected an RFC 3339 time between years 0000 and 9999, such as 2026-01-31T12:00:00Z",
    }
}

impl Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z; fails outside years 0000–9999 (RFC 3339's range).
    pub fn from_unix(secs: i64) -> Result<Self, SigningError> {
        let dt = OffsetDateTime::from_unix_timestamp(secs).map_err(|_| invalid())?;
        if !(0..=9999).contains(&dt.year()) {
            return Err(invalid());
        }
        Ok(Timestamp(secs))
    }

    /// A system time, truncated to the second.
    pub fn from_system_time(t: SystemTime) -> Result<Self, SigningError> {
        let secs = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).map_err(|_| invalid())?,
            // Before 1970: round towards the past so truncation is consistent on both sides.
            Err(e) => {
                let d = e.duration();
                let whole = i64::try_from(d.as_secs()).map_err(|_| invalid())?;
                -whole - i64::from(d.subsec_nanos() > 0)
            }
        };
        Timestamp::from_unix(secs)
    }

    /// Seconds since 1970-01-01T00:00:00Z.
    pub fn unix(&self) -> i64 {
        self.0
    }
}

impl FromStr for Timestamp {
    type Err = SigningError;
    /// Accepts any RFC 3339 time (`2026-01-31T13:00:00+01:00`, fractional seconds); converts it to
    /// UTC and drops the fraction.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // RFC 3339 times are short; refuse to hand a huge string to the parser.
        if s.len() > 64 {
            return Err(invalid());
        }
        let dt = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| invalid())?;
        Timestamp::from_unix(dt.unix_timestamp())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The constructors only admit instants that `time` can represent, so this cannot fail;
        // printing the raw number keeps Display total all the same.
        match OffsetDateTime::from_unix_timestamp(self.0) {
            Ok(dt) => {
                let dt = dt.to_offset(UtcOffset::UTC);
                write!(
                    f,
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                    dt.year(),
                    u8::from(dt.month()),
                    dt.day(),
                    dt.hour(),
                    dt.minute(),
                    dt.second()
                )
            }
            Err(_) => write!(f, "@{}", self.0),
        }
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_values() {
        let t = Timestamp::from_unix(0).unwrap();
        assert_eq!(t.to_string(), "1970-01-01T00:00:00Z");
        let t: Timestamp = "2026-11-22T01:36:19.75+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-22T00:36:19Z");
        assert_eq!(t.unix(), 1_795_307_779);
        let back: Timestamp = t.to_string().parse().unwrap();
        assert_eq!(back, t);
        let st = UNIX_EPOCH + Duration::from_millis(1_795_307_779_999);
        assert_eq!(Timestamp::from_system_time(st).unwrap(), t);
    }

    #[test]
    fn rejects_non_rfc3339() {
        // RFC 3339 §5.6 lets a space stand for the "T"; that spelling is accepted and normalised.
        let spaced: Timestamp = "2026-11-22 00:36:19Z".parse().unwrap();
        assert_eq!(spaced.to_string(), "2026-11-22T00:36:19Z");
        for bad in [
            "",
            "2026-11-22",
            "2026-02-30T00:00:00Z",
            "2026-11-22T00:36:19",
            "yesterday",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad:?} accepted");
        }
        assert!(Timestamp::from_unix(i64::MAX).is_err());
    }
}

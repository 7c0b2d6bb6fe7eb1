//! The time zone Linli shows times in and counts days in: one setting (`time_zone`, default
//! `Asia/Shanghai`), carried by the store's clock and used for display, the working-day
//! calendar and deadlines, "this year", the daily check-in, month buckets of statistics and the
//! offset of Open311 timestamps. Instants are always stored in UTC.
//!
//! The setting is an IANA name, but Linli does not ship the tz database (chrono-tz would add its
//! parser and tables to every build): it knows a fixed table of zones that keep one UTC offset
//! all year — China's (no daylight saving since 1991) and its neighbours'. An unknown name, or a
//! zone with daylight saving, is refused at start with the list of known names. The current
//! offset applies to every instant; Linli's data starts long after these zones last changed.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};

/// IANA names Linli accepts, with their offset from UTC in minutes (no daylight saving).
const ZONES: &[(&str, i32)] = &[
    ("Asia/Shanghai", 480),
    // Links to Asia/Shanghai in the tz database.
    ("Asia/Chongqing", 480),
    ("Asia/Chungking", 480),
    ("Asia/Harbin", 480),
    ("PRC", 480),
    // 新疆时间 (UTC+6), used locally in Xinjiang; Asia/Kashgar links to it.
    ("Asia/Urumqi", 360),
    ("Asia/Kashgar", 360),
    ("Asia/Hong_Kong", 480),
    ("Asia/Macau", 480),
    ("Asia/Taipei", 480),
    ("Asia/Singapore", 480),
    ("Asia/Kuala_Lumpur", 480),
    ("Asia/Manila", 480),
    ("Asia/Ulaanbaatar", 480),
    ("Asia/Tokyo", 540),
    ("Asia/Seoul", 540),
    ("Asia/Bangkok", 420),
    ("Asia/Ho_Chi_Minh", 420),
    ("Asia/Jakarta", 420),
    ("Asia/Kolkata", 330),
    ("Asia/Dubai", 240),
    ("UTC", 0),
    ("Etc/UTC", 0),
];

/// A time zone with a fixed offset, named as in the tz database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    name: &'static str,
    offset_minutes: i32,
}

impl Default for Zone {
    fn default() -> Self {
        Zone::SHANGHAI
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// A `time_zone` setting Linli cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownZone(pub String);

impl std::fmt::Display for UnknownZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known: Vec<&str> = ZONES.iter().map(|(n, _)| *n).collect();
        write!(
            f,
            "time_zone = {:?} is not supported: Linli counts days in zones without daylight saving time; use one of {}",
            self.0,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownZone {}

impl std::str::FromStr for Zone {
    type Err = UnknownZone;
    fn from_str(s: &str) -> Result<Zone, UnknownZone> {
        Zone::from_name(s)
    }
}

impl Zone {
    /// China Standard Time (UTC+8), the default.
    pub const SHANGHAI: Zone = Zone {
        name: "Asia/Shanghai",
        offset_minutes: 480,
    };

    /// The zone of an IANA name (letter case ignored), or why not.
    pub fn from_name(name: &str) -> Result<Zone, UnknownZone> {
        let n = name.trim();
        ZONES
            .iter()
            .find(|(z, _)| z.eq_ignore_ascii_case(n))
            .map(|&(name, offset_minutes)| Zone {
                name,
                offset_minutes,
            })
            .ok_or_else(|| UnknownZone(name.to_string()))
    }

    pub fn name(self) -> &'static str {
        self.name
    }

    /// Offset from UTC in minutes (Shanghai: 480).
    pub fn offset_minutes(self) -> i32 {
        self.offset_minutes
    }

    pub fn offset_ms(self) -> i64 {
        i64::from(self.offset_minutes) * 60_000
    }

    /// The offset for chrono (formatting with `+08:00`).
    pub fn fixed(self) -> FixedOffset {
        FixedOffset::east_opt(self.offset_minutes * 60).expect("offsets in the table are valid")
    }

    /// Local wall time of an instant (UTC milliseconds).
    pub fn local(self, utc_ms: i64) -> NaiveDateTime {
        DateTime::from_timestamp_millis(utc_ms.saturating_add(self.offset_ms()))
            .unwrap_or_default()
            .naive_utc()
    }

    /// The local date of an instant.
    pub fn date(self, utc_ms: i64) -> NaiveDate {
        self.local(utc_ms).date()
    }

    /// The local year of an instant ("this year").
    pub fn year(self, utc_ms: i64) -> i32 {
        self.local(utc_ms).year()
    }

    /// The instant (UTC milliseconds) of a local wall time.
    pub fn utc_ms(self, local: NaiveDateTime) -> i64 {
        local.and_utc().timestamp_millis() - self.offset_ms()
    }

    /// Local midnight at the start of the day of an instant, as UTC milliseconds.
    pub fn start_of_day(self, utc_ms: i64) -> i64 {
        self.utc_ms(self.date(utc_ms).and_time(NaiveTime::MIN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_looked_up_and_unknown_ones_refused_with_the_list() {
        assert_eq!(Zone::from_name("Asia/Shanghai"), Ok(Zone::SHANGHAI));
        assert_eq!(Zone::default(), Zone::SHANGHAI);
        assert_eq!(
            Zone::from_name(" asia/shanghai ").unwrap().name(),
            "Asia/Shanghai"
        );
        assert_eq!(Zone::from_name("PRC").unwrap().offset_minutes(), 480);
        assert_eq!(
            Zone::from_name("Asia/Urumqi").unwrap().offset_minutes(),
            360
        );
        assert_eq!(
            Zone::from_name("Asia/Kolkata").unwrap().offset_ms(),
            19_800_000
        );
        let e = Zone::from_name("Europe/Berlin").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("\"Europe/Berlin\" is not supported"), "{msg}");
        assert!(
            msg.contains("Asia/Shanghai") && msg.contains("UTC"),
            "{msg}"
        );
        assert!(Zone::from_name("").is_err());
        assert!("Asia/Tokyo".parse::<Zone>().is_ok());
    }

    #[test]
    fn local_dates_and_day_starts_follow_the_offset() {
        // 2026-12-31 16:30 UTC is 2027-01-01 00:30 in Shanghai, still 2026 in Urumqi (22:30).
        let t = NaiveDate::from_ymd_opt(2026, 12, 31)
            .unwrap()
            .and_hms_opt(16, 30, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis();
        let sh = Zone::SHANGHAI;
        let ur = Zone::from_name("Asia/Urumqi").unwrap();
        assert_eq!((sh.year(t), ur.year(t)), (2027, 2026));
        assert_eq!(sh.date(t), NaiveDate::from_ymd_opt(2027, 1, 1).unwrap());
        assert_eq!(sh.start_of_day(t), t - 30 * 60_000);
        assert_eq!(ur.start_of_day(t), t - 22 * 3_600_000 - 30 * 60_000);
        assert_eq!(sh.utc_ms(sh.local(t)), t);
        assert_eq!(sh.fixed().to_string(), "+08:00");
        assert_eq!(
            Zone::from_name("UTC").unwrap().fixed().to_string(),
            "+00:00"
        );
    }
}

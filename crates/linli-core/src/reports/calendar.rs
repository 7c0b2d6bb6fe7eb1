//! The working-day calendar for report deadlines: weekends off, official holidays off, and the
//! make-up working days (调休上班) on, as published each year by the State Council. Deadlines in
//! working days count whole working days in the calendar's time zone ([`crate::tz::Zone`]; the
//! configured `time_zone`, Asia/Shanghai by default).
//!
//! Built-in data covers the years listed in [`OFFICIAL`]; an administrator can add more (the
//! store keeps them). A deadline that runs into a year with no data is an error the caller must
//! surface — never a silent guess.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Duration, NaiveDate, NaiveTime, Weekday};

use crate::tz::Zone;

/// A day that differs from the weekday rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayKind {
    /// Off although it is Monday–Friday (法定节假日 / 调休放假).
    Holiday,
    /// Worked although it is Saturday or Sunday (调休上班).
    Workday,
}

/// One year's official arrangement: (month, day) of holidays and make-up working days.
pub struct OfficialYear {
    pub year: i32,
    /// Where the data comes from.
    pub source: &'static str,
    pub holidays: &'static [(u32, u32)],
    pub workdays: &'static [(u32, u32)],
}

/// 国务院办公厅关于2026年部分节假日安排的通知 (2025-11-04, Xinhua).
pub const OFFICIAL: &[OfficialYear] = &[OfficialYear {
    year: 2026,
    source: "国务院办公厅关于2026年部分节假日安排的通知（2025年11月4日）",
    holidays: &[
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 15),
        (2, 16),
        (2, 17),
        (2, 18),
        (2, 19),
        (2, 20),
        (2, 21),
        (2, 22),
        (2, 23),
        (4, 4),
        (4, 5),
        (4, 6),
        (5, 1),
        (5, 2),
        (5, 3),
        (5, 4),
        (5, 5),
        (6, 19),
        (6, 20),
        (6, 21),
        (9, 25),
        (9, 26),
        (9, 27),
        (10, 1),
        (10, 2),
        (10, 3),
        (10, 4),
        (10, 5),
        (10, 6),
        (10, 7),
    ],
    workdays: &[(1, 4), (2, 14), (2, 28), (5, 9), (9, 20), (10, 10)],
}];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalendarError {
    /// No official arrangement is known for this year.
    MissingYear(i32),
}

impl CalendarError {
    pub fn code(&self) -> &'static str {
        "report.calendar_missing_year"
    }
}

#[derive(Debug, Clone, Default)]
pub struct WorkCalendar {
    days: BTreeMap<NaiveDate, DayKind>,
    years: BTreeSet<i32>,
    /// Where days begin and end (Asia/Shanghai unless set with [`WorkCalendar::in_zone`]).
    zone: Zone,
}

impl WorkCalendar {
    /// The built-in official years.
    pub fn official() -> WorkCalendar {
        let mut c = WorkCalendar::default();
        for y in OFFICIAL {
            for &(m, d) in y.holidays {
                c.days.insert(
                    NaiveDate::from_ymd_opt(y.year, m, d).expect("valid official date"),
                    DayKind::Holiday,
                );
            }
            for &(m, d) in y.workdays {
                c.days.insert(
                    NaiveDate::from_ymd_opt(y.year, m, d).expect("valid official date"),
                    DayKind::Workday,
                );
            }
            c.years.insert(y.year);
        }
        c
    }

    /// The same calendar with days counted in `zone`.
    pub fn in_zone(mut self, zone: Zone) -> WorkCalendar {
        self.zone = zone;
        self
    }

    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// Add an administrator's year (all its exceptional days); replaces what was known for it.
    pub fn add_year(&mut self, year: i32, days: &[(NaiveDate, DayKind)]) {
        self.days.retain(|d, _| d.year() != year);
        for (d, k) in days.iter().filter(|(d, _)| d.year() == year) {
            self.days.insert(*d, *k);
        }
        self.years.insert(year);
    }

    pub fn known_years(&self) -> Vec<i32> {
        self.years.iter().copied().collect()
    }

    /// Whether `d` is a working day; an error for a year without data.
    pub fn is_working_day(&self, d: NaiveDate) -> Result<bool, CalendarError> {
        if !self.years.contains(&d.year()) {
            return Err(CalendarError::MissingYear(d.year()));
        }
        Ok(match self.days.get(&d) {
            Some(DayKind::Holiday) => false,
            Some(DayKind::Workday) => true,
            None => !matches!(d.weekday(), Weekday::Sat | Weekday::Sun),
        })
    }

    /// The end (23:59:59, local time) of the `n`-th working day after the local day of `start`.
    /// `n = 0` is the end of the start day itself if it is a working day, else of the next one.
    pub fn add_working_days(&self, start_utc_ms: i64, n: u32) -> Result<i64, CalendarError> {
        let mut day = self.zone.date(start_utc_ms);
        let mut left = n;
        if !self.is_working_day(day)? {
            day = self.next_working_day(day)?;
        }
        while left > 0 {
            day = self.next_working_day(day)?;
            left -= 1;
        }
        let end = day.and_time(NaiveTime::from_hms_milli_opt(23, 59, 59, 999).expect("valid time"));
        Ok(self.zone.utc_ms(end))
    }

    fn next_working_day(&self, from: NaiveDate) -> Result<NaiveDate, CalendarError> {
        let mut d = from + Duration::days(1);
        while !self.is_working_day(d)? {
            d += Duration::days(1);
        }
        Ok(d)
    }
}

/// The longest range an administrator may type as one entry (the longest holiday is 9 days).
pub const MAX_RANGE_DAYS: i64 = 31;

/// The dates an administrator typed for one `year`, as the State Council notice reads: single
/// days (`2027-02-06`, or `02-06` with the year implied) and ranges (`2027-02-06~2027-02-12`; also
/// `至`, `..` or `–` between the ends), separated by spaces, new lines or commas (`,` `，` `、`
/// `;`). Sorted, without repeats. An entry that is not a date of `year` — or a range longer than
/// [`MAX_RANGE_DAYS`] — is an error naming that entry.
pub fn parse_day_list(text: &str, year: i32) -> Result<Vec<NaiveDate>, String> {
    let day = |t: &str| -> Option<NaiveDate> {
        let t = t.trim();
        let d = NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .ok()
            .or_else(|| NaiveDate::parse_from_str(&format!("{year}-{t}"), "%Y-%m-%d").ok())?;
        (d.year() == year).then_some(d)
    };
    let mut out = BTreeSet::new();
    let entries = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '，' | '、' | ';' | '；'))
        .filter(|t| !t.is_empty());
    for entry in entries {
        let ends = ["~", "至", "..", "–", "—"]
            .iter()
            .find_map(|sep| entry.split_once(sep));
        match ends {
            Some((a, b)) => {
                let (Some(a), Some(b)) = (day(a), day(b)) else {
                    return Err(entry.to_string());
                };
                if b < a || (b - a).num_days() >= MAX_RANGE_DAYS {
                    return Err(entry.to_string());
                }
                let mut d = a;
                while d <= b {
                    out.insert(d);
                    d += Duration::days(1);
                }
            }
            None => {
                out.insert(day(entry).ok_or_else(|| entry.to_string())?);
            }
        }
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn administrators_type_days_and_ranges_as_the_notice_reads() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            parse_day_list(
                "2027-01-01, 02-06~02-08\n2027-05-01至2027-05-03、10-01",
                2027
            )
            .unwrap(),
            vec![
                d("2027-01-01"),
                d("2027-02-06"),
                d("2027-02-07"),
                d("2027-02-08"),
                d("2027-05-01"),
                d("2027-05-02"),
                d("2027-05-03"),
                d("2027-10-01"),
            ]
        );
        // Repeats collapse; empty input is an empty list.
        assert_eq!(parse_day_list("02-06 2027-02-06", 2027).unwrap().len(), 1);
        assert!(parse_day_list("  ", 2027).unwrap().is_empty());
        // Wrong year, not a date, a reversed or too long range: the entry is named.
        assert_eq!(parse_day_list("2026-02-06", 2027), Err("2026-02-06".into()));
        assert_eq!(parse_day_list("02-30", 2027), Err("02-30".into()));
        assert_eq!(parse_day_list("春节", 2027), Err("春节".into()));
        assert_eq!(
            parse_day_list("02-08~02-06", 2027),
            Err("02-08~02-06".into())
        );
        assert_eq!(
            parse_day_list("01-01~03-01", 2027),
            Err("01-01~03-01".into())
        );
    }

    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    /// Noon, Shanghai time, as UTC millis.
    fn noon(y: i32, m: u32, day: u32) -> i64 {
        Zone::SHANGHAI.utc_ms(d(y, m, day).and_hms_opt(12, 0, 0).unwrap())
    }

    fn local_date(ms: i64) -> NaiveDate {
        Zone::SHANGHAI.date(ms)
    }

    #[test]
    fn official_2026_holidays_and_make_up_days() {
        let c = WorkCalendar::official();
        assert_eq!(
            c.is_working_day(d(2026, 1, 4)),
            Ok(true),
            "Sunday 1 Jan 4 is worked"
        );
        assert_eq!(
            c.is_working_day(d(2026, 2, 14)),
            Ok(true),
            "Saturday before the Spring Festival"
        );
        assert_eq!(c.is_working_day(d(2026, 2, 16)), Ok(false));
        assert_eq!(c.is_working_day(d(2026, 2, 23)), Ok(false));
        assert_eq!(c.is_working_day(d(2026, 2, 24)), Ok(true));
        assert_eq!(c.is_working_day(d(2026, 10, 8)), Ok(true));
        assert_eq!(
            c.is_working_day(d(2026, 10, 10)),
            Ok(true),
            "Saturday make-up day"
        );
        assert_eq!(
            c.is_working_day(d(2026, 10, 11)),
            Ok(false),
            "an ordinary Sunday"
        );
        // 261 weekdays minus the 13 statutory holiday days (since 2025) = 248 working days;
        // make-up Saturdays and Sundays exactly offset the bridged weekdays.
        let working = (0..365)
            .filter(|i| {
                c.is_working_day(d(2026, 1, 1) + Duration::days(*i))
                    .unwrap()
            })
            .count();
        assert_eq!(working, 248);
    }

    #[test]
    fn deadlines_skip_holidays_and_count_make_up_days() {
        let c = WorkCalendar::official();
        // Friday 13 Feb + 1 working day = Saturday 14 Feb (make-up day).
        assert_eq!(
            local_date(c.add_working_days(noon(2026, 2, 13), 1).unwrap()),
            d(2026, 2, 14)
        );
        // Saturday 14 Feb + 1 = Tuesday 24 Feb, after the nine-day holiday.
        assert_eq!(
            local_date(c.add_working_days(noon(2026, 2, 14), 1).unwrap()),
            d(2026, 2, 24)
        );
        // Accepted on a holiday: the count starts from the next working day.
        assert_eq!(
            local_date(c.add_working_days(noon(2026, 10, 3), 0).unwrap()),
            d(2026, 10, 8)
        );
        assert_eq!(
            local_date(c.add_working_days(noon(2026, 10, 3), 2).unwrap()),
            d(2026, 10, 10)
        );
        // The deadline is the end of the local day.
        let due = c.add_working_days(noon(2026, 3, 2), 3).unwrap();
        assert_eq!(
            Zone::SHANGHAI.local(due).time(),
            NaiveTime::from_hms_milli_opt(23, 59, 59, 999).unwrap()
        );
        // Late in the evening UTC is already the next local day.
        let evening_utc = Zone::SHANGHAI.utc_ms(d(2026, 3, 3).and_hms_opt(1, 0, 0).unwrap());
        assert_eq!(
            local_date(c.add_working_days(evening_utc, 0).unwrap()),
            d(2026, 3, 3)
        );
    }

    #[test]
    fn days_begin_and_end_in_the_calendars_zone() {
        // Monday 2 March 2026, 17:00 UTC: already Tuesday 3 March 01:00 in Shanghai, still
        // Monday 23:00 in Urumqi (UTC+6).
        let t = d(2026, 3, 2)
            .and_hms_opt(17, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis();
        let urumqi = Zone::from_name("Asia/Urumqi").unwrap();
        let sh = WorkCalendar::official();
        let ur = WorkCalendar::official().in_zone(urumqi);
        let due_sh = sh.add_working_days(t, 0).unwrap();
        let due_ur = ur.add_working_days(t, 0).unwrap();
        assert_eq!(Zone::SHANGHAI.date(due_sh), d(2026, 3, 3));
        assert_eq!(urumqi.date(due_ur), d(2026, 3, 2));
        // Each ends at 23:59:59.999 local time.
        assert_eq!(
            urumqi.local(due_ur).time(),
            NaiveTime::from_hms_milli_opt(23, 59, 59, 999).unwrap()
        );
        assert_eq!(
            due_ur,
            d(2026, 3, 2)
                .and_hms_milli_opt(17, 59, 59, 999)
                .unwrap()
                .and_utc()
                .timestamp_millis()
        );
    }

    #[test]
    fn a_missing_year_is_an_error_not_a_guess() {
        let c = WorkCalendar::official();
        assert_eq!(
            c.is_working_day(d(2027, 1, 5)),
            Err(CalendarError::MissingYear(2027))
        );
        assert_eq!(
            c.add_working_days(noon(2026, 12, 30), 5),
            Err(CalendarError::MissingYear(2027))
        );
        let mut c = c;
        c.add_year(2027, &[(d(2027, 1, 1), DayKind::Holiday)]);
        assert_eq!(c.known_years(), vec![2026, 2027]);
        assert_eq!(
            local_date(c.add_working_days(noon(2026, 12, 30), 2).unwrap()),
            d(2027, 1, 4)
        );
    }
}

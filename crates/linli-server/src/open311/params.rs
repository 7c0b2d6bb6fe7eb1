//! Open311 parameters: query strings and `application/x-www-form-urlencoded` bodies, where an
//! empty parameter counts as absent (as the spec says), `attribute[code]=value` pairs are
//! collected apart, and dates, numbers and status lists are checked with localized errors.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone};

use linli_core::AppError;

/// Asia/Shanghai (UTC+8, no daylight saving): the offset Linli writes dates with and the one a
/// date without offset is read in.
pub fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

/// ISO 8601 / W3C date-time with offset, e.g. `2026-11-24T09:30:00+08:00`.
pub fn iso(ms: i64) -> String {
    match china().timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        None => String::new(),
    }
}

/// Parameters of one call.
#[derive(Debug, Default, Clone)]
pub struct Params {
    values: BTreeMap<String, String>,
    /// `attribute[code]` values (a code given several times keeps every value, for
    /// multivaluelist attributes).
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl Params {
    /// Parse `a=1&b=&attribute[x]=y` pairs, later sources overriding earlier ones.
    pub fn parse(sources: &[&[u8]]) -> Params {
        let mut p = Params::default();
        for src in sources {
            for (k, v) in form_urlencoded::parse(src) {
                let v = v.trim().to_string();
                if v.is_empty() {
                    continue;
                }
                if let Some(code) = k
                    .strip_prefix("attribute[")
                    .and_then(|c| c.strip_suffix(']'))
                {
                    let code = code.trim_end_matches("[]").to_string();
                    p.attributes.entry(code).or_default().push(v);
                } else {
                    p.values.insert(k.into_owned(), v);
                }
            }
        }
        p
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A comma-separated list (`a,b`), empty items dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn float(&self, name: &'static str, range: f64) -> Result<Option<f64>, AppError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x.abs() <= range => Ok(Some(x)),
                _ => Err(AppError::bad_request("validation.bad_value").arg("field", name)),
            },
        }
    }

    /// A W3C date-time (`2010-01-01T00:00:00Z`, with or without offset; without one it is
    /// read in Asia/Shanghai) or a date (midnight, Asia/Shanghai), as epoch ms.
    pub fn date(&self, name: &'static str) -> Result<Option<i64>, AppError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        parse_date(v)
            .map(Some)
            .ok_or_else(|| AppError::bad_request("open311.bad_date").arg("field", name))
    }
}

pub fn parse_date(v: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.timestamp_millis());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(v, f) {
            return china()
                .from_local_datetime(&n)
                .single()
                .map(|t| t.timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|n| china().from_local_datetime(&n).single())
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_parameters_are_absent_and_attributes_apart() {
        let p = Params::parse(&[
            b"status=&service_code=water&attribute%5Bpublic%5D=yes&attribute[title]=&x=+1+",
        ]);
        assert_eq!(p.get("status"), None);
        assert_eq!(p.get("service_code"), Some("water"));
        assert_eq!(p.get("x"), Some("1"));
        assert_eq!(p.attributes.get("public"), Some(&vec!["yes".to_string()]));
        assert!(!p.attributes.contains_key("title"));
        let p = Params::parse(&[b"a=1", b"a=2"]);
        assert_eq!(p.get("a"), Some("2"));
        assert_eq!(
            Params::parse(&[b"s=open,,closed"]).list("s"),
            ["open", "closed"]
        );
    }

    #[test]
    fn dates_in_w3c_format_with_and_without_offset() {
        let utc = parse_date("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(parse_date("2026-01-01T08:00:00+08:00"), Some(utc));
        assert_eq!(parse_date("2026-01-01T08:00:00"), Some(utc));
        assert_eq!(parse_date("2026-01-01"), Some(utc - 8 * 3_600_000));
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(iso(utc), "2026-01-01T08:00:00+08:00");
    }
}

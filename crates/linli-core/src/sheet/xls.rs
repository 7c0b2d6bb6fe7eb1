//! Legacy xls (BIFF8 records in an OLE compound file, as Excel 97–2003 and WPS save it) read
//! record by record into the [`Grid`].
//!
//! Why not calamine's `Xls`: it parses every sheet of the file eagerly into dense ranges of
//! values and formula texts (a few bytes of records can name a cell at row 65535, column 65535;
//! a formula of a few bytes can print as kilobytes), reserves what a `Dimensions` record declares,
//! copies a shared string into every cell that names it, and follows compound-file sector chains
//! without noticing a loop. Here the compound file is opened by the `cfb` crate (which refuses
//! loops and sectors beyond the file) and only the workbook stream is read, no longer than the
//! file; the records are walked in place; only the first worksheet's cells are taken, each
//! through the grid's limits; the shared-string table is one text buffer under the text limit.
//! Excel 5/95 files (BIFF5) are not read: saved as xlsx they are.

use std::io::{Cursor, Read};

use super::{Grid, NumberFormat, SheetError, SheetLimits, bool_text, number_text};

const BOF: u16 = 0x0809;
const EOF: u16 = 0x000A;
const CONTINUE: u16 = 0x003C;
const BIFF8: u16 = 0x0600;

/// The workbook stream of the compound file, no longer than the file itself.
fn workbook_stream(bytes: &[u8]) -> Result<Vec<u8>, SheetError> {
    let not = |_| SheetError::NotASpreadsheet;
    let mut cf = cfb::CompoundFile::open(Cursor::new(bytes)).map_err(not)?;
    let stream = match cf.open_stream("/Workbook") {
        Ok(s) => Ok(s),
        Err(_) => cf.open_stream("/Book"),
    };
    let stream = stream.map_err(not)?;
    let cap = (bytes.len() as u64).min(stream.len()) as usize;
    let mut out = Vec::with_capacity(cap);
    stream
        .take(bytes.len() as u64)
        .read_to_end(&mut out)
        .map_err(not)?;
    Ok(out)
}

/// Records in place: (type, data, offset of the record in the stream).
struct Records<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(u16, &'a [u8]), SheetError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.s.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 4 {
            return Some(Err(SheetError::NotASpreadsheet));
        }
        let typ = u16::from_le_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
        let Some(data) = rest.get(4..4 + len) else {
            return Some(Err(SheetError::NotASpreadsheet));
        };
        self.pos += 4 + len;
        Some(Ok((typ, data)))
    }
}

fn u16_at(d: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*d.get(i)?, *d.get(i + 1)?]))
}

fn u32_at(d: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(i..i + 4)?.try_into().ok()?))
}

fn f64_at(d: &[u8], i: usize) -> Option<f64> {
    Some(f64::from_le_bytes(d.get(i..i + 8)?.try_into().ok()?))
}

/// An `XLUnicodeString` (cch, flags, characters) within one record: its text, at most
/// `max_chars` characters read (more are cut: the grid then refuses the cell by length).
fn unicode_string(d: &[u8], max_chars: usize) -> Option<String> {
    let cch = usize::from(u16_at(d, 0)?).min(max_chars.saturating_add(1));
    let wide = d.get(2)? & 1 != 0;
    let chars = d.get(3..)?;
    Some(if wide {
        let units = chars
            .chunks_exact(2)
            .take(cch)
            .map(|u| u16::from_le_bytes([u[0], u[1]]));
        char::decode_utf16(units)
            .map(|c| c.unwrap_or('\u{FFFD}'))
            .collect()
    } else {
        chars.iter().take(cch).map(|b| char::from(*b)).collect()
    })
}

/// The SST record and its CONTINUE records, read as one sequence of bytes in which a string's
/// characters continue after a CONTINUE boundary behind a new flags byte.
struct Chunks<'a> {
    parts: std::vec::IntoIter<&'a [u8]>,
    data: &'a [u8],
}

impl<'a> Chunks<'a> {
    /// The next byte, moving into the next record if this one is used up.
    fn byte(&mut self) -> Option<u8> {
        while self.data.is_empty() {
            self.data = self.parts.next()?;
        }
        let b = self.data[0];
        self.data = &self.data[1..];
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.byte()?,
            self.byte()?,
            self.byte()?,
            self.byte()?,
        ]))
    }

    fn skip(&mut self, mut n: usize) -> Option<()> {
        while n > 0 {
            while self.data.is_empty() {
                self.data = self.parts.next()?;
            }
            let k = n.min(self.data.len());
            self.data = &self.data[k..];
            n -= k;
        }
        Some(())
    }

    fn at_end(&mut self) -> bool {
        while self.data.is_empty() {
            match self.parts.next() {
                Some(d) => self.data = d,
                None => return true,
            }
        }
        false
    }

    /// `cch` characters, 1 or 2 bytes each (`wide`), into `units`; a record boundary inside
    /// them carries a new flags byte.
    fn chars(&mut self, cch: usize, mut wide: bool, units: &mut Vec<u16>) -> Option<()> {
        units.clear();
        while units.len() < cch {
            if self.data.is_empty() {
                self.data = self.parts.next()?;
                wide = *self.data.first()? & 1 != 0;
                self.data = &self.data[1..];
                continue;
            }
            if wide {
                if self.data.len() < 2 {
                    return None;
                }
                units.push(u16::from_le_bytes([self.data[0], self.data[1]]));
                self.data = &self.data[2..];
            } else {
                units.push(u16::from(self.data[0]));
                self.data = &self.data[1..];
            }
        }
        Some(())
    }
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

fn read_sst(parts: Vec<&[u8]>, limits: &SheetLimits) -> Result<SharedStrings, SheetError> {
    let bad = || SheetError::NotASpreadsheet;
    let mut c = Chunks {
        parts: parts.into_iter(),
        data: &[],
    };
    c.skip(8).ok_or_else(bad)?; // cstTotal, cstUnique: counts the file claims, not used
    let mut sst = SharedStrings::default();
    let mut units = Vec::new();
    while !c.at_end() {
        if sst.ends.len() >= limits.max_cells {
            return Err(SheetError::too_large(limits));
        }
        let cch = usize::from(c.u16().ok_or_else(bad)?);
        let flags = c.byte().ok_or_else(bad)?;
        let runs = if flags & 0x08 != 0 {
            usize::from(c.u16().ok_or_else(bad)?)
        } else {
            0
        };
        let ext = if flags & 0x04 != 0 {
            c.u32().ok_or_else(bad)? as usize
        } else {
            0
        };
        c.chars(cch, flags & 1 != 0, &mut units).ok_or_else(bad)?;
        c.skip(runs * 4).ok_or_else(bad)?;
        c.skip(ext).ok_or_else(bad)?;
        for ch in char::decode_utf16(units.iter().copied()) {
            let ch = ch.unwrap_or('\u{FFFD}');
            if sst.text.len() + ch.len_utf8() > limits.max_text_bytes {
                return Err(SheetError::too_much_data(limits.max_text_bytes as u64));
            }
            sst.text.push(ch);
        }
        sst.ends.push(sst.text.len() as u32);
    }
    sst.text.shrink_to_fit();
    sst.ends.shrink_to_fit();
    Ok(sst)
}

/// RK: a number packed in 30 bits (an integer or the high bits of a double), maybe × 1/100.
fn rk(v: u32) -> f64 {
    let x = if v & 2 != 0 {
        f64::from((v as i32) >> 2)
    } else {
        f64::from_bits(u64::from(v & 0xFFFF_FFFC) << 32)
    };
    if v & 1 != 0 { x / 100.0 } else { x }
}

pub(super) fn read(bytes: &[u8], limits: &SheetLimits, grid: &mut Grid) -> Result<(), SheetError> {
    let bad = || SheetError::NotASpreadsheet;
    let stream = workbook_stream(bytes)?;
    let mut records = Records { s: &stream, pos: 0 };

    // Workbook globals: formats, cell formats, the date system, shared strings, the first
    // worksheet's offset.
    let (typ, data) = records.next().ok_or_else(bad)??;
    if typ != BOF || u16_at(data, 0) != Some(BIFF8) {
        return Err(SheetError::NotASpreadsheet);
    }
    let mut custom: std::collections::HashMap<u16, NumberFormat> = Default::default();
    let mut xf_formats: Vec<u16> = Vec::new();
    let mut is_1904 = false;
    let mut sheet_pos = None;
    let mut sst = SharedStrings::default();
    let mut pending: Option<(u16, &[u8])> = None;
    loop {
        let (typ, data) = match pending.take() {
            Some(r) => r,
            None => records.next().ok_or_else(bad)??,
        };
        match typ {
            EOF => break,
            // FilePass: encrypted.
            0x002F => return Err(SheetError::NotASpreadsheet),
            0x0022 => is_1904 = u16_at(data, 0) == Some(1),
            0x041E => {
                if let (Some(id), Some(code)) = (u16_at(data, 0), data.get(2..)) {
                    let code = unicode_string(code, 1024).unwrap_or_default();
                    custom.insert(id, NumberFormat::custom(&code));
                }
            }
            0x00E0 if xf_formats.len() < usize::from(u16::MAX) + 1 => {
                xf_formats.push(u16_at(data, 2).unwrap_or(0));
            }
            // BoundSheet8: the first worksheet (dt 0); chart and macro sheets are skipped.
            0x0085 if sheet_pos.is_none() && data.get(5) == Some(&0) => {
                sheet_pos = u32_at(data, 0);
            }
            0x00FC => {
                let mut parts = vec![data];
                loop {
                    match records.next() {
                        Some(Ok((CONTINUE, d))) => parts.push(d),
                        Some(r) => {
                            pending = Some(r?);
                            break;
                        }
                        None => break,
                    }
                }
                sst = read_sst(parts, limits)?;
            }
            _ => {}
        }
    }
    let formats: Vec<NumberFormat> = xf_formats
        .iter()
        .map(|id| {
            custom
                .get(id)
                .copied()
                .unwrap_or_else(|| NumberFormat::builtin(u32::from(*id)))
        })
        .collect();
    let format = |d: &[u8]| {
        u16_at(d, 4)
            .and_then(|x| formats.get(usize::from(x)).copied())
            .unwrap_or_default()
    };

    // The worksheet's cells.
    let Some(pos) = sheet_pos else {
        return Err(SheetError::Empty);
    };
    let mut records = Records {
        s: &stream,
        pos: pos as usize,
    };
    let (typ, _) = records.next().ok_or_else(bad)??;
    if typ != BOF {
        return Err(SheetError::NotASpreadsheet);
    }
    let max_chars = limits.max_cell_chars;
    let mut depth = 0usize;
    let mut formula_string: Option<(usize, usize)> = None;
    for record in records {
        let (typ, d) = record?;
        if typ == BOF {
            depth += 1;
            continue;
        }
        if typ == EOF {
            if depth == 0 {
                break;
            }
            depth -= 1;
            continue;
        }
        if depth > 0 {
            continue;
        }
        let at = || -> Option<(usize, usize)> {
            Some((usize::from(u16_at(d, 0)?) + 1, usize::from(u16_at(d, 2)?)))
        };
        match typ {
            // Number
            0x0203 => {
                if let (Some((r, c)), Some(v)) = (at(), f64_at(d, 6)) {
                    grid.put(r, c, &number_text(v, format(d), is_1904))?;
                }
            }
            // RK
            0x027E => {
                if let (Some((r, c)), Some(v)) = (at(), u32_at(d, 6)) {
                    grid.put(r, c, &number_text(rk(v), format(d), is_1904))?;
                }
            }
            // MulRk: row, first column, (format, RK) per cell, last column.
            0x00BD => {
                if let Some((r, first)) = at() {
                    let cells = d.get(4..d.len().saturating_sub(2)).unwrap_or_default();
                    for (i, cell) in cells.chunks_exact(6).enumerate() {
                        let xf = u16::from_le_bytes([cell[0], cell[1]]);
                        let f = formats.get(usize::from(xf)).copied().unwrap_or_default();
                        let v = rk(u32::from_le_bytes([cell[2], cell[3], cell[4], cell[5]]));
                        grid.put(r, first + i, &number_text(v, f, is_1904))?;
                    }
                }
            }
            // Label, RString
            0x0204 | 0x00D6 => {
                if let (Some((r, c)), Some(s)) =
                    (at(), d.get(6..).and_then(|s| unicode_string(s, max_chars)))
                {
                    grid.put(r, c, s.trim())?;
                }
            }
            // LabelSst
            0x00FD => {
                if let (Some((r, c)), Some(i)) = (at(), u32_at(d, 6)) {
                    grid.put(r, c, sst.get(i as usize).trim())?;
                }
            }
            // BoolErr: a boolean, or an error (shown blank).
            0x0205 => {
                if let (Some((r, c)), Some(v), Some(0)) = (at(), d.get(6), d.get(7)) {
                    grid.put(r, c, bool_text(*v != 0))?;
                }
            }
            // Formula: its cached value; a text result follows in a String record.
            0x0006 => {
                formula_string = None;
                let (Some((r, c)), Some(v)) = (at(), d.get(6..14)) else {
                    continue;
                };
                if v[6..8] == [0xFF, 0xFF] {
                    match v[0] {
                        0 => formula_string = Some((r, c)),
                        1 => grid.put(r, c, bool_text(v[2] != 0))?,
                        _ => {}
                    }
                } else if let Some(x) = f64_at(d, 6) {
                    grid.put(r, c, &number_text(x, format(d), is_1904))?;
                }
            }
            0x0207 => {
                if let (Some((r, c)), Some(s)) =
                    (formula_string.take(), unicode_string(d, max_chars))
                {
                    grid.put(r, c, s.trim())?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A BIFF8 record.
    pub fn record(typ: u16, data: &[u8]) -> Vec<u8> {
        let mut r = typ.to_le_bytes().to_vec();
        r.extend_from_slice(&(data.len() as u16).to_le_bytes());
        r.extend_from_slice(data);
        r
    }

    /// An `XLUnicodeString` in UTF-16.
    pub fn wide(s: &str) -> Vec<u8> {
        let units: Vec<u16> = s.encode_utf16().collect();
        let mut v = (units.len() as u16).to_le_bytes().to_vec();
        v.push(1);
        for u in units {
            v.extend_from_slice(&u.to_le_bytes());
        }
        v
    }

    /// A cell record's row, column and format.
    pub fn rc(row: u16, col: u16) -> Vec<u8> {
        let mut v = row.to_le_bytes().to_vec();
        v.extend_from_slice(&col.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v
    }

    /// An xls file: a compound file whose workbook stream holds `globals` (after BOF), one
    /// BoundSheet8 and a worksheet with `cells`.
    pub fn xls(globals: &[Vec<u8>], cells: &[Vec<u8>]) -> Vec<u8> {
        let bof = |dt: u16| {
            let mut d = BIFF8.to_le_bytes().to_vec();
            d.extend_from_slice(&dt.to_le_bytes());
            d.extend_from_slice(&[0; 12]);
            record(BOF, &d)
        };
        let mut head = bof(0x0005);
        for g in globals {
            head.extend_from_slice(g);
        }
        let mut sheet_name = vec![0u8, 0]; // pos, filled in below
        sheet_name.extend_from_slice(&[0, 0, 0, 0]); // rest of pos, hsState, dt
        sheet_name.extend_from_slice(&[6, 0]);
        sheet_name.extend_from_slice(b"Sheet1");
        let bound_len = 4 + sheet_name.len();
        let pos = head.len() + bound_len + 4;
        sheet_name[..4].copy_from_slice(&(pos as u32).to_le_bytes());
        head.extend_from_slice(&record(0x0085, &sheet_name));
        head.extend_from_slice(&record(EOF, &[]));
        assert_eq!(head.len(), pos);
        head.extend_from_slice(&bof(0x0010));
        for c in cells {
            head.extend_from_slice(c);
        }
        head.extend_from_slice(&record(EOF, &[]));
        let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        {
            let mut s = cf.create_stream("/Workbook").unwrap();
            std::io::Write::write_all(&mut s, &head).unwrap();
        }
        cf.flush().unwrap();
        cf.into_inner().into_inner()
    }

    #[test]
    fn rk_numbers() {
        assert_eq!(rk((5 << 2) | 2), 5.0);
        assert_eq!(rk((1234 << 2) | 3), 12.34);
        let bits = 2.5f64.to_bits();
        assert_eq!(rk((bits >> 32) as u32), 2.5);
    }
}

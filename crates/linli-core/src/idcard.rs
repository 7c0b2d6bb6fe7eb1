//! Resident ID numbers (居民身份证号, GB 11643-1999): 17 digits + a check character.

use chrono::{Datelike, NaiveDate};

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// Why an ID number was refused; each maps to a localized message key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdCardError {
    Length,
    Characters,
    BirthDate,
    CheckDigit,
}

impl IdCardError {
    pub fn code(self) -> &'static str {
        match self {
            IdCardError::Length => "validation.id_card.length",
            IdCardError::Characters => "validation.id_card.characters",
            IdCardError::BirthDate => "validation.id_card.birth_date",
            IdCardError::CheckDigit => "validation.id_card.check_digit",
        }
    }
}

/// A validated, normalized (upper-case X) ID number and what it encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdCard {
    pub number: String,
    pub birth_date: NaiveDate,
    pub male: bool,
}

/// The check character for the first 17 digits.
pub fn check_char(first17: &[u8]) -> char {
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    CHECK[(sum % 11) as usize]
}

/// Validate and normalize an ID number (surrounding spaces ignored, `x` accepted for `X`).
pub fn parse(input: &str) -> Result<IdCard, IdCardError> {
    let s = input.trim().to_ascii_uppercase();
    if s.chars().count() != 18 {
        return Err(IdCardError::Length);
    }
    let b = s.as_bytes();
    if !b[..17].iter().all(u8::is_ascii_digit) || !(b[17].is_ascii_digit() || b[17] == b'X') {
        return Err(IdCardError::Characters);
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
    let birth_date = NaiveDate::from_ymd_opt(num(6..10) as i32, num(10..12), num(12..14))
        .filter(|d| d.year() >= 1900 && *d <= chrono::Utc::now().date_naive())
        .ok_or(IdCardError::BirthDate)?;
    if check_char(&b[..17]) != b[17] as char {
        return Err(IdCardError::CheckDigit);
    }
    let male = (b[16] - b'0') % 2 == 1;
    Ok(IdCard {
        number: s,
        birth_date,
        male,
    })
}

/// Build a valid ID number from a 6-digit region code, a birth date and a 3-digit sequence
/// (odd sequence = male). Used by the demo generator and tests.
pub fn compose(region6: &str, birth: NaiveDate, seq: u16) -> String {
    let mut s = format!("{region6}{}{:03}", birth.format("%Y%m%d"), seq % 1000);
    let c = check_char(s.as_bytes());
    s.push(c);
    s
}

/// `110105********123X`: region kept, birth date and sequence hidden.
pub fn mask(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() < 10 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_gb11643_example() {
        // The worked example of GB 11643-1999.
        let id = parse("11010519491231002x").unwrap();
        assert_eq!(id.number, "11010519491231002X");
        assert_eq!(
            id.birth_date,
            NaiveDate::from_ymd_opt(1949, 12, 31).unwrap()
        );
        assert!(!id.male);
    }

    #[test]
    fn rejects_wrong_check_digit_length_chars_and_dates() {
        assert_eq!(parse("110105194912310021"), Err(IdCardError::CheckDigit));
        assert_eq!(parse("1101051949123100"), Err(IdCardError::Length));
        assert_eq!(parse("11010519491231002A"), Err(IdCardError::Characters));
        let feb30 = compose("110105", NaiveDate::from_ymd_opt(1990, 2, 28).unwrap(), 1)
            .replace("19900228", "19900230");
        assert_eq!(parse(&feb30), Err(IdCardError::BirthDate));
    }

    #[test]
    fn composed_numbers_validate() {
        for seq in 0..200u16 {
            let d = NaiveDate::from_ymd_opt(
                1950 + (seq as i32 % 60),
                1 + (seq as u32 % 12),
                1 + (seq as u32 % 28),
            )
            .unwrap();
            let n = compose("420102", d, seq);
            let id = parse(&n).unwrap();
            assert_eq!(id.birth_date, d);
            assert_eq!(id.male, seq % 2 == 1);
        }
    }

    #[test]
    fn masks_keep_region_and_tail() {
        assert_eq!(mask("11010519491231002X"), "110105********002X");
    }
}

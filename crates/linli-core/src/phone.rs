//! Mainland mobile numbers: `1[3-9]` followed by 9 digits.

/// Normalize (drop spaces, dashes and a leading +86/86) and validate a mobile number.
pub fn parse_mobile(input: &str) -> Option<String> {
    let digits: String = input.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = digits
        .strip_prefix("+86")
        .or_else(|| {
            if digits.len() == 13 {
                digits.strip_prefix("86")
            } else {
                None
            }
        })
        .unwrap_or(&digits);
    let b = digits.as_bytes();
    let ok = b.len() == 11
        && b.iter().all(u8::is_ascii_digit)
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1]);
    ok.then(|| digits.to_string())
}

/// `138****5678`.
pub fn mask(number: &str) -> String {
    if number.len() != 11 || !number.is_ascii() {
        return "*".repeat(number.chars().count());
    }
    format!("{}****{}", &number[..3], &number[7..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_normalizes() {
        assert_eq!(
            parse_mobile("138 1234 5678").as_deref(),
            Some("13812345678")
        );
        assert_eq!(
            parse_mobile("+8613812345678").as_deref(),
            Some("13812345678")
        );
        assert_eq!(parse_mobile("12812345678"), None);
        assert_eq!(parse_mobile("1381234567"), None);
        assert_eq!(parse_mobile("1381234567a"), None);
    }

    #[test]
    fn masks_middle_four() {
        assert_eq!(mask("13812345678"), "138****5678");
    }
}

//! Lowercase hex identifiers: event ids, pubkeys, KeyPackageRefs, slots.

/// Normalises a 64-character hex string (any case) to lowercase, or `None`
/// when it is not 64 hex characters.
pub fn normalize_hex64(value: &str) -> Option<String> {
    (value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())).then(|| value.to_ascii_lowercase())
}

/// Whether `value` is exactly 64 lowercase hex characters.
pub fn is_lower_hex64(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses a 16-bit MLS code point as written in tags: `0x0001` (any case,
/// 1 to 4 digits) or plain decimal.
pub fn parse_u16_code(value: &str) -> Option<u16> {
    let value = value.trim();
    match value.strip_prefix("0x").or_else(|| value.strip_prefix("0X")) {
        Some(digits) if (1..=4).contains(&digits.len()) => u16::from_str_radix(digits, 16).ok(),
        Some(_) => None,
        None if !value.is_empty() && value.len() <= 5 && value.bytes().all(|b| b.is_ascii_digit()) => {
            value.parse().ok()
        }
        None => None,
    }
}

/// Formats a 16-bit MLS code point the way tags and answers write it: `0x0001`.
pub fn format_u16_code(value: u16) -> String {
    format!("0x{value:04x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_rejects() {
        let upper = "AB".repeat(32);
        assert_eq!(normalize_hex64(&upper), Some("ab".repeat(32)));
        assert_eq!(normalize_hex64("abc"), None);
        assert_eq!(normalize_hex64(&"zz".repeat(32)), None);
        assert!(is_lower_hex64(&"0f".repeat(32)));
        assert!(!is_lower_hex64(&"0F".repeat(32)));
    }

    #[test]
    fn code_points() {
        assert_eq!(parse_u16_code("0x0001"), Some(1));
        assert_eq!(parse_u16_code("0xF2EE"), Some(0xf2ee));
        assert_eq!(parse_u16_code("10"), Some(10));
        assert_eq!(parse_u16_code("0x12345"), None);
        assert_eq!(parse_u16_code("x1"), None);
        assert_eq!(parse_u16_code(""), None);
        assert_eq!(format_u16_code(0xa), "0x000a");
    }
}

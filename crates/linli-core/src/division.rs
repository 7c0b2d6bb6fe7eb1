//! Statistical division codes (统计用区划代码): 12 digits, province 2, city 2, county 2,
//! street 3, community 3.

/// True for a well-formed 12-digit code.
pub fn is_valid_code(code: &str) -> bool {
    code.len() == 12 && code.bytes().all(|b| b.is_ascii_digit())
}

/// True when `child` lies inside `parent` by code (parent's non-zero prefix matches).
pub fn code_within(parent: &str, child: &str) -> bool {
    if !is_valid_code(parent) || !is_valid_code(child) {
        return false;
    }
    let significant = parent.trim_end_matches('0').len();
    // Round up to the level boundary (2, 4, 6, 9, 12) so "420100" does not match "420110".
    let level_end = [2, 4, 6, 9, 12]
        .into_iter()
        .find(|&e| e >= significant)
        .unwrap_or(12);
    child[..level_end] == parent[..level_end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert!(is_valid_code("420102003001"));
        assert!(!is_valid_code("42010200300"));
        assert!(code_within("420100000000", "420102003001"));
        assert!(!code_within("420102000000", "420103003001"));
    }
}

//! Small text helpers of the mappings: trimmed non-empty strings, names,
//! order numbers in free text, de-duplicated lists and UUID-shaped ids.

/// `Some(s)` for a non-empty trimmed string.
pub fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A UUID-shaped id (`8-4-4-4-12`) from the first 32 hex digits of a hash.
pub(crate) fn uuid_from_hash(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The items in their first-seen order, each once.
pub(crate) fn dedup_in_order(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// `first last`, either part optional; `None` when both are blank.
pub(crate) fn full_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    let parts: Vec<String> = [first, last].into_iter().filter_map(non_empty).collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// An order reference a shipper typed into free text (`Order #1001`, `#1001`,
/// `order 000123`) as an
/// [`OrderLink::Number`](storefold_core::event::OrderLink::Number) (`#1001`).
pub(crate) fn order_number_in_text(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    // `#1001` anywhere.
    if let Some(pos) = lower.find('#') {
        let digits: String = lower[pos + 1..]
            .chars()
            .skip_while(|c| c.is_whitespace())
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if digits.chars().any(|c| c.is_ascii_digit()) {
            return Some(format!("#{}", digits.to_ascii_uppercase()));
        }
    }
    // `order 1001`, `order: 1001`, `order no. 1001`.
    let idx = lower.find("order")?;
    let rest = lower[idx + 5..].trim_start_matches(|c: char| {
        c.is_whitespace() || c == ':' || c == '.' || c == 'n' || c == 'o'
    });
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        return Some(format!("#{digits}"));
    }
    None
}

/// `#1001` from an order number written as `1001` or `#1001`.
pub(crate) fn hash_number(raw: &str) -> Option<String> {
    let n = raw.trim().trim_start_matches('#').trim();
    (!n.is_empty()).then(|| format!("#{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_numbers_in_text() {
        assert_eq!(
            order_number_in_text("Order #1001").as_deref(),
            Some("#1001")
        );
        assert_eq!(
            order_number_in_text("Order 000123").as_deref(),
            Some("#000123")
        );
        assert_eq!(order_number_in_text("order no. 42").as_deref(), Some("#42"));
        assert_eq!(
            order_number_in_text("Where is #A-1001?").as_deref(),
            Some("#A-1001")
        );
        assert_eq!(order_number_in_text("my order is late"), None);
        assert_eq!(order_number_in_text("#"), None);
        assert_eq!(hash_number(" 1001 ").as_deref(), Some("#1001"));
        assert_eq!(hash_number("#1001").as_deref(), Some("#1001"));
        assert_eq!(hash_number(" "), None);
    }
}

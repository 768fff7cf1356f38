//! Fresh names for conformance checks, so checks never collide on shared storage.

/// `{tag}_` followed by 12 random lowercase hex digits.
fn unique_name(tag: &str) -> String {
    let suffix: u64 = rand::random::<u64>() & 0xffff_ffff_ffff;
    format!("{tag}_{suffix:012x}")
}

/// Returns a username no other check (in this run or any other) will pick:
/// `{tag}_` followed by 12 random lowercase hex digits.
///
/// Keep `tag` short, lowercase ASCII letters, digits or `_`, so the name stays a valid
/// Parley username.
pub fn unique_username(tag: &str) -> String {
    unique_name(tag)
}

/// Returns a conversation id no other check will pick: `c_{tag}_` followed by
/// 12 random lowercase hex digits.
pub fn unique_conversation_id(tag: &str) -> String {
    unique_name(&format!("c_{tag}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_tag_and_differ() {
        let a = unique_username("t");
        let b = unique_username("t");
        assert!(a.starts_with("t_"), "{a}");
        assert_eq!(a.len(), "t_".len() + 12, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn conversation_ids_carry_the_tag_and_differ() {
        let a = unique_conversation_id("t");
        let b = unique_conversation_id("t");
        assert!(a.starts_with("c_t_"), "{a}");
        assert_eq!(a.len(), "c_t_".len() + 12, "{a}");
        assert_ne!(a, b);
    }
}

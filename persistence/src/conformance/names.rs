//! Fresh names for conformance checks, so checks never collide on shared storage.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;

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

/// Returns a node id no other check of this process has picked (until all
/// 65,536 are used): node ids are too few for random picks to stay apart, so
/// they are counted, from a random start so that processes sharing storage
/// rarely meet.
pub fn unique_node_id() -> u16 {
    static START: OnceLock<u16> = OnceLock::new();
    static TAKEN: AtomicU16 = AtomicU16::new(0);
    let start = *START.get_or_init(rand::random::<u16>);
    start.wrapping_add(TAKEN.fetch_add(1, Ordering::Relaxed))
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

    #[test]
    fn node_ids_differ() {
        let ids: std::collections::BTreeSet<u16> = (0..1_000).map(|_| unique_node_id()).collect();
        assert_eq!(ids.len(), 1_000, "every node id handed out once");
    }
}

//! Lowercase hexadecimal text, and random identifiers made of it.

use ring::rand::{SecureRandom, SystemRandom};

/// `bytes` as lowercase hexadecimal, two digits per byte.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// `n` bytes from the system's secure random generator, as hexadecimal
/// (`2 * n` digits); `None` if the system has no randomness to give.
pub fn random(n: usize) -> Option<String> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(encode(&bytes))
}

/// Whether `s` is exactly `digits` lowercase hexadecimal digits.
pub fn is_lower_hex(s: &str, digits: usize) -> bool {
    s.len() == digits && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_byte_value() {
        assert_eq!(encode(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(encode(&[]), "");
    }

    #[test]
    fn random_ids_have_the_asked_length_and_differ() {
        let a = random(16).expect("randomness");
        let b = random(16).expect("randomness");
        assert!(is_lower_hex(&a, 32), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn recognises_lower_hex() {
        assert!(is_lower_hex("00ff", 4));
        assert!(!is_lower_hex("00FF", 4));
        assert!(!is_lower_hex("00f", 4));
        assert!(!is_lower_hex("00fg", 4));
    }
}

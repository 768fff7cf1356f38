//! Object keys: `{user}/{32 lowercase hex digits}`, the digits 128 random bits.
//!
//! The user part says who uploaded; the random part makes keys unguessable,
//! which is what guards downloads (see `crate::http::media`).

use std::fmt;

use chat_core::ids::UserId;

use crate::hex;

/// Random bytes in a key.
const RANDOM_BYTES: usize = 16;

/// A valid object key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

/// Why text is not an object key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an object key is {{user}}/{{32 lowercase hex digits}}")]
pub struct InvalidObjectKey;

impl ObjectKey {
    /// A fresh random key for an upload by `user`; `None` if the system has
    /// no randomness to give.
    pub fn generate(user: &UserId) -> Option<ObjectKey> {
        Some(ObjectKey(format!(
            "{}/{}",
            user.as_str(),
            hex::random(RANDOM_BYTES)?
        )))
    }

    /// Parses `owner` and `id`, the two parts of a key.
    ///
    /// # Errors
    ///
    /// [`InvalidObjectKey`] unless `owner` is a valid user id and `id` is 32
    /// lowercase hex digits.
    pub fn from_parts(owner: &str, id: &str) -> Result<ObjectKey, InvalidObjectKey> {
        let owner = UserId::parse(owner).map_err(|_| InvalidObjectKey)?;
        if !hex::is_lower_hex(id, RANDOM_BYTES * 2) {
            return Err(InvalidObjectKey);
        }
        Ok(ObjectKey(format!("{}/{id}", owner.as_str())))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user who uploaded it.
    pub fn owner(&self) -> &str {
        self.0.split_once('/').map_or("", |(owner, _)| owner)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_and_differ() {
        let alice = UserId::parse("alice").unwrap();
        let a = ObjectKey::generate(&alice).unwrap();
        let b = ObjectKey::generate(&alice).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.owner(), "alice");
        let (owner, id) = a.as_str().split_once('/').unwrap();
        assert_eq!(ObjectKey::from_parts(owner, id), Ok(a.clone()));
        assert_eq!(id.len(), 32);
    }

    #[test]
    fn malformed_keys_are_refused() {
        let id = "0123456789abcdef0123456789abcdef";
        assert!(ObjectKey::from_parts("alice", id).is_ok());
        for (owner, id) in [
            ("alice", "0123"),
            ("alice", "0123456789ABCDEF0123456789ABCDEF"),
            ("alice", "../../../../etc/passwd0123456789a"),
            ("Alice", id),
            ("", id),
            ("a/b", id),
        ] {
            assert_eq!(
                ObjectKey::from_parts(owner, id),
                Err(InvalidObjectKey),
                "{owner}/{id}"
            );
        }
    }
}

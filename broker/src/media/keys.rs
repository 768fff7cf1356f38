//! Object keys: `{conversation_id}/{32 lowercase hex digits}`, the digits 128
//! random bits.
//!
//! The conversation part scopes an object to the conversation it was uploaded
//! for: only that conversation's members get URLs for it. The random part
//! makes keys unguessable.

use std::fmt;

use chat_core::ids::ConversationId;

use crate::hex;

/// Random bytes in a key.
const RANDOM_BYTES: usize = 16;

/// A valid object key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    key: String,
    conversation: ConversationId,
}

/// Why text is not an object key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an object key is {{conversation_id}}/{{32 lowercase hex digits}}")]
pub struct InvalidObjectKey;

impl ObjectKey {
    /// A fresh random key for an upload to `conversation`; `None` if the
    /// system has no randomness to give.
    pub fn generate(conversation: &ConversationId) -> Option<ObjectKey> {
        Some(ObjectKey {
            key: format!("{}/{}", conversation.as_str(), hex::random(RANDOM_BYTES)?),
            conversation: conversation.clone(),
        })
    }

    /// Parses `conversation` and `id`, the two parts of a key.
    ///
    /// # Errors
    ///
    /// [`InvalidObjectKey`] unless `conversation` is a valid conversation id
    /// and `id` is 32 lowercase hex digits.
    pub fn from_parts(conversation: &str, id: &str) -> Result<ObjectKey, InvalidObjectKey> {
        let conversation = ConversationId::parse(conversation).map_err(|_| InvalidObjectKey)?;
        if !hex::is_lower_hex(id, RANDOM_BYTES * 2) {
            return Err(InvalidObjectKey);
        }
        Ok(ObjectKey {
            key: format!("{}/{id}", conversation.as_str()),
            conversation,
        })
    }

    /// Parses a whole key, `{conversation_id}/{id}`.
    ///
    /// # Errors
    ///
    /// [`InvalidObjectKey`] as for [`ObjectKey::from_parts`].
    pub fn parse(key: &str) -> Result<ObjectKey, InvalidObjectKey> {
        let (conversation, id) = key.split_once('/').ok_or(InvalidObjectKey)?;
        ObjectKey::from_parts(conversation, id)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The conversation the object belongs to.
    pub fn conversation(&self) -> &ConversationId {
        &self.conversation
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_and_differ() {
        let conv = ConversationId::parse("alice~bob").unwrap();
        let a = ObjectKey::generate(&conv).unwrap();
        let b = ObjectKey::generate(&conv).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.conversation(), &conv);
        let (owner, id) = a.as_str().split_once('/').unwrap();
        assert_eq!(owner, "alice~bob");
        assert_eq!(ObjectKey::from_parts(owner, id), Ok(a.clone()));
        assert_eq!(ObjectKey::parse(a.as_str()), Ok(a.clone()));
        assert_eq!(id.len(), 32);
    }

    #[test]
    fn malformed_keys_are_refused() {
        let id = "0123456789abcdef0123456789abcdef";
        assert!(ObjectKey::from_parts("alice~bob", id).is_ok());
        for (conversation, id) in [
            ("alice~bob", "0123"),
            ("alice~bob", "0123456789ABCDEF0123456789ABCDEF"),
            ("alice~bob", "../../../../etc/passwd0123456789a"),
            ("bob~alice", id),
            ("alice", id),
            ("", id),
            ("a/b", id),
        ] {
            assert_eq!(
                ObjectKey::from_parts(conversation, id),
                Err(InvalidObjectKey),
                "{conversation}/{id}"
            );
        }
        assert_eq!(ObjectKey::parse("no-slash"), Err(InvalidObjectKey));
        assert_eq!(
            ObjectKey::parse(&format!("alice~bob/{id}/extra")),
            Err(InvalidObjectKey)
        );
    }
}

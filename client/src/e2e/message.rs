//! Sealing and opening one message: the associated data, and what decryption
//! returns.
//!
//! The associated data binds the ciphertext to its place in Parley, so that a
//! ciphertext cut out of one message and pasted into another fails to open:
//!
//! ```text
//! AD = AD_CONTEXT ‖ envelope header ‖ recipient identity key (32)
//!      ‖ sender user ‖ sender device ‖ recipient user ‖ recipient device
//!      ‖ conversation id ‖ client message id
//! ```
//!
//! where each string is written as its UTF-8 length (u32, big-endian)
//! followed by its bytes. The header already holds the sender's identity key.

use ring::aead;

use super::{envelope::NONCE_LEN, E2eError, IdentityPublicKey};

/// The first bytes of every message's associated data.
pub const AD_CONTEXT: &[u8] = b"Parley E2E v1 message";

/// Where a message is going: the fields its associated data binds. Sender and
/// recipient must build the same context; a recipient takes the sender and
/// conversation from the delivered `ChatMessage` (which the server fills from
/// the authenticated connection) and its own user and device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageContext<'a> {
    /// User id of the author.
    pub sender_user: &'a str,
    /// The author's device (the `Ciphertext`'s `sender_device_id`).
    pub sender_device: &'a str,
    /// User id of the recipient.
    pub recipient_user: &'a str,
    /// The recipient device (the `DeviceCiphertext`'s `device_id`).
    pub recipient_device: &'a str,
    /// The conversation the message is published to.
    pub conversation_id: &'a str,
    /// The message's `client_message_id`.
    pub client_message_id: &'a str,
}

impl MessageContext<'_> {
    /// The associated data for a message with `header` to the device whose
    /// identity key is `recipient_identity`.
    pub(crate) fn associated_data(
        &self,
        header: &[u8],
        recipient_identity: &IdentityPublicKey,
    ) -> Result<Vec<u8>, E2eError> {
        let fields = [
            ("sender user", self.sender_user),
            ("sender device", self.sender_device),
            ("recipient user", self.recipient_user),
            ("recipient device", self.recipient_device),
            ("conversation id", self.conversation_id),
            ("client message id", self.client_message_id),
        ];
        let strings: usize = fields.iter().map(|(_, s)| 4 + s.len()).sum();
        let mut ad = Vec::with_capacity(AD_CONTEXT.len() + header.len() + 32 + strings);
        ad.extend_from_slice(AD_CONTEXT);
        ad.extend_from_slice(header);
        ad.extend_from_slice(recipient_identity.as_bytes());
        for (name, value) in fields {
            let len = u32::try_from(value.len()).map_err(|_| E2eError::FieldTooLong(name))?;
            ad.extend_from_slice(&len.to_be_bytes());
            ad.extend_from_slice(value.as_bytes());
        }
        Ok(ad)
    }
}

/// A decrypted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// The identity key of the device that sent it. The message proves the
    /// sender held this key; whether the key is really the sender device's is
    /// for the client to judge (compare it with the directory's and with the
    /// one pinned for the device).
    pub sender_identity: IdentityPublicKey,
    /// The one-time prekey the message used up, if any.
    pub one_time_prekey_id: Option<u32>,
}

/// Encrypts `plaintext` in place of a new buffer: returns ciphertext ‖ tag.
pub(crate) fn seal(
    key: &aead::LessSafeKey,
    nonce: [u8; NONCE_LEN],
    ad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, E2eError> {
    let mut buffer = Vec::with_capacity(plaintext.len() + key.algorithm().tag_len());
    buffer.extend_from_slice(plaintext);
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(ad),
        &mut buffer,
    )
    .map_err(|_| E2eError::Crypto)?;
    Ok(buffer)
}

/// Decrypts ciphertext ‖ tag, or [`E2eError::DecryptionFailed`].
pub(crate) fn open(
    key: &aead::LessSafeKey,
    nonce: [u8; NONCE_LEN],
    ad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, E2eError> {
    let mut buffer = ciphertext.to_vec();
    let plaintext_len = key
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(ad),
            &mut buffer,
        )
        .map_err(|_| E2eError::DecryptionFailed)?
        .len();
    buffer.truncate(plaintext_len);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> MessageContext<'static> {
        MessageContext {
            sender_user: "alice",
            sender_device: "phone",
            recipient_user: "bob",
            recipient_device: "laptop",
            conversation_id: "alice~bob",
            client_message_id: "m1",
        }
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let key = IdentityPublicKey::from_bytes([9; 32]);
        let a = context().associated_data(b"h", &key).unwrap();
        // Moving a character from one field to the next changes the AD.
        let shifted = MessageContext {
            sender_user: "alicep",
            sender_device: "hone",
            ..context()
        };
        assert_ne!(a, shifted.associated_data(b"h", &key).unwrap());
        assert!(a.starts_with(AD_CONTEXT));
        assert_ne!(
            a,
            context()
                .associated_data(b"h", &IdentityPublicKey::from_bytes([8; 32]))
                .unwrap()
        );
    }
}

//! Encrypted message bodies in Parley's wire types.
//!
//! A sender encrypts one plaintext to every recipient device (the other
//! member's devices and its own other devices) and sends the resulting
//! `ChatMessage` body of kind `ciphertext` on `s/{conversation}`. Each
//! recipient device receives the whole body on `u/{user}/i` and opens its own
//! entry. The server fills `sender` and `conversation_id` of the delivered
//! message from the authenticated connection and the topic, which is what
//! the recipient binds the decryption to.

use parley_proto::v1::{chat_message, ChatMessage, Ciphertext, DeviceCiphertext};

use super::{
    Decrypted, DeviceKeyring, E2eError, IdentityPublicKey, MessageContext, VerifiedBundle,
};

/// The `scheme_version` of a `Ciphertext` body whose entries are this crate's
/// envelopes.
pub const SCHEME_VERSION: u32 = 1;

/// Who sends a message, and where to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// The sender's user id (the authenticated user).
    pub sender_user: &'a str,
    /// The sending device; becomes the body's `sender_device_id`.
    pub sender_device: &'a str,
    /// The conversation id, as in the topic `s/{conversation_id}`.
    pub conversation_id: &'a str,
    /// The message's `client_message_id`.
    pub client_message_id: &'a str,
}

/// One device to encrypt to, with its verified bundle.
#[derive(Debug)]
pub struct Recipient<'a> {
    /// The device's user id.
    pub user: &'a str,
    /// The device id.
    pub device_id: &'a str,
    /// The device's bundle; its one-time prekey, if any, is used up.
    pub bundle: &'a mut VerifiedBundle,
}

/// Encrypts `plaintext` to every recipient device and returns the message
/// body to send. What the plaintext holds (for instance an encoded `Text` or
/// `MediaRef`) is for the clients to agree on. On an error, recipients
/// already encrypted to may have had their bundle's one-time prekey used up.
pub fn encrypt_body(
    keyring: &DeviceKeyring,
    outgoing: &Outgoing<'_>,
    recipients: &mut [Recipient<'_>],
    plaintext: &[u8],
) -> Result<chat_message::Body, E2eError> {
    if recipients.is_empty() {
        return Err(E2eError::NoRecipients);
    }
    let mut entries = Vec::with_capacity(recipients.len());
    for recipient in recipients.iter_mut() {
        let context = MessageContext {
            sender_user: outgoing.sender_user,
            sender_device: outgoing.sender_device,
            recipient_user: recipient.user,
            recipient_device: recipient.device_id,
            conversation_id: outgoing.conversation_id,
            client_message_id: outgoing.client_message_id,
        };
        entries.push(DeviceCiphertext {
            user: recipient.user.to_owned(),
            device_id: recipient.device_id.to_owned(),
            ciphertext: keyring.encrypt_to_device(recipient.bundle, &context, plaintext)?,
        });
    }
    Ok(chat_message::Body::Ciphertext(Ciphertext {
        scheme_version: SCHEME_VERSION,
        sender_device_id: outgoing.sender_device.to_owned(),
        recipients: entries,
    }))
}

/// Opens the entry for device `device_id` of user `user` in a delivered
/// message. `expected_sender` is the identity key the client knows for the
/// sending device (see [`DeviceKeyring::decrypt_from_device`]).
///
/// A sender's own device finds no entry in its own messages
/// ([`E2eError::NotARecipient`]): it keeps the plaintext it sent.
pub fn decrypt_message(
    keyring: &mut DeviceKeyring,
    user: &str,
    device_id: &str,
    message: &ChatMessage,
    expected_sender: Option<&IdentityPublicKey>,
) -> Result<Decrypted, E2eError> {
    let Some(chat_message::Body::Ciphertext(body)) = &message.body else {
        return Err(E2eError::NotCiphertext);
    };
    if body.scheme_version != SCHEME_VERSION {
        return Err(E2eError::UnsupportedScheme(body.scheme_version));
    }
    let entry = body
        .recipients
        .iter()
        .find(|entry| entry.user == user && entry.device_id == device_id)
        .ok_or(E2eError::NotARecipient)?;
    let context = MessageContext {
        sender_user: &message.sender,
        sender_device: &body.sender_device_id,
        recipient_user: user,
        recipient_device: device_id,
        conversation_id: &message.conversation_id,
        client_message_id: &message.client_message_id,
    };
    keyring.decrypt_from_device(&context, &entry.ciphertext, expected_sender)
}

#[cfg(test)]
mod tests {
    use parley_proto::v1::{Envelope, Text};
    use parley_proto::{decode_envelope, encode_envelope};

    use super::*;
    use crate::e2e::PrekeyBundle;

    fn device(prekeys: u32) -> (DeviceKeyring, VerifiedBundle) {
        let mut keyring = DeviceKeyring::generate().unwrap();
        let published = keyring.generate_one_time_prekeys(prekeys).unwrap();
        let bundle = PrekeyBundle {
            device_keys: keyring.published_keys(),
            one_time_prekey: published.first().copied(),
        }
        .verify()
        .unwrap();
        (keyring, bundle)
    }

    const OUTGOING: Outgoing<'static> = Outgoing {
        sender_user: "alice",
        sender_device: "phone",
        conversation_id: "alice~bob",
        client_message_id: "c-1",
    };

    /// What the server stores and delivers: the client's message with the
    /// server's fields filled in, through the wire encoding.
    fn delivered(body: chat_message::Body) -> ChatMessage {
        let sent = ChatMessage {
            client_message_id: OUTGOING.client_message_id.to_owned(),
            body: Some(body),
            ..ChatMessage::default()
        };
        let payload = encode_envelope(&Envelope::from(sent));
        let Some(parley_proto::v1::envelope::Kind::Message(mut message)) =
            decode_envelope(&payload).unwrap().kind
        else {
            panic!("not a message envelope");
        };
        message.sender = OUTGOING.sender_user.to_owned();
        message.conversation_id = OUTGOING.conversation_id.to_owned();
        message.seq = 1;
        message
    }

    #[test]
    fn every_recipient_device_opens_its_own_entry() {
        let (alice_phone, _) = device(0);
        let (mut alice_laptop, mut alice_laptop_bundle) = device(1);
        let (mut bob_phone, mut bob_phone_bundle) = device(1);
        let (mut bob_tablet, mut bob_tablet_bundle) = device(0);
        let plaintext = b"secret plans";
        let body = encrypt_body(
            &alice_phone,
            &OUTGOING,
            &mut [
                Recipient {
                    user: "alice",
                    device_id: "laptop",
                    bundle: &mut alice_laptop_bundle,
                },
                Recipient {
                    user: "bob",
                    device_id: "phone",
                    bundle: &mut bob_phone_bundle,
                },
                Recipient {
                    user: "bob",
                    device_id: "tablet",
                    bundle: &mut bob_tablet_bundle,
                },
            ],
            plaintext,
        )
        .unwrap();
        let chat_message::Body::Ciphertext(ciphertext) = &body else {
            panic!("not a ciphertext body");
        };
        assert_eq!(ciphertext.scheme_version, SCHEME_VERSION);
        assert_eq!(ciphertext.sender_device_id, "phone");
        assert_eq!(ciphertext.recipients.len(), 3);

        let message = delivered(body);
        let sender = alice_phone.identity_key();
        for (keyring, user, device_id) in [
            (&mut alice_laptop, "alice", "laptop"),
            (&mut bob_phone, "bob", "phone"),
            (&mut bob_tablet, "bob", "tablet"),
        ] {
            let opened = decrypt_message(keyring, user, device_id, &message, Some(&sender))
                .unwrap_or_else(|e| panic!("{user}/{device_id}: {e}"));
            assert_eq!(opened.plaintext, plaintext);
        }
        // The sender's own device has no entry.
        let mut alice_phone = alice_phone;
        assert_eq!(
            decrypt_message(&mut alice_phone, "alice", "phone", &message, None),
            Err(E2eError::NotARecipient)
        );
        // Another device's entry does not open with this device's keys.
        assert_eq!(
            decrypt_message(&mut bob_tablet, "bob", "phone", &message, None),
            Err(E2eError::UnknownSignedPrekey)
        );
    }

    #[test]
    fn the_server_sees_no_plaintext_and_cannot_move_the_message() {
        let (alice, _) = device(0);
        let (mut bob, mut bob_bundle) = device(0);
        let plaintext = b"meet at noon";
        let body = encrypt_body(
            &alice,
            &OUTGOING,
            &mut [Recipient {
                user: "bob",
                device_id: "phone",
                bundle: &mut bob_bundle,
            }],
            plaintext,
        )
        .unwrap();
        let message = delivered(body);
        let payload = encode_envelope(&Envelope::from(message.clone()));
        assert!(!payload.windows(plaintext.len()).any(|w| w == plaintext));

        // Replayed into another conversation, or attributed to another
        // sender, it no longer opens.
        let moved = ChatMessage {
            conversation_id: "bob~carol".to_owned(),
            ..message.clone()
        };
        let misattributed = ChatMessage {
            sender: "carol".to_owned(),
            ..message.clone()
        };
        for forged in [moved, misattributed] {
            assert_eq!(
                decrypt_message(&mut bob, "bob", "phone", &forged, None),
                Err(E2eError::DecryptionFailed)
            );
        }
        assert_eq!(
            decrypt_message(&mut bob, "bob", "phone", &message, None)
                .unwrap()
                .plaintext,
            plaintext
        );
    }

    #[test]
    fn bodies_this_scheme_cannot_open_are_typed_errors() {
        let (alice, _) = device(0);
        let (mut bob, mut bob_bundle) = device(0);
        assert_eq!(
            encrypt_body(&alice, &OUTGOING, &mut [], b"x"),
            Err(E2eError::NoRecipients)
        );
        let text = ChatMessage {
            body: Some(chat_message::Body::Text(Text {
                text: "hi".to_owned(),
            })),
            ..ChatMessage::default()
        };
        assert_eq!(
            decrypt_message(&mut bob, "bob", "phone", &text, None),
            Err(E2eError::NotCiphertext)
        );
        let mut body = encrypt_body(
            &alice,
            &OUTGOING,
            &mut [Recipient {
                user: "bob",
                device_id: "phone",
                bundle: &mut bob_bundle,
            }],
            b"x",
        )
        .unwrap();
        if let chat_message::Body::Ciphertext(ciphertext) = &mut body {
            ciphertext.scheme_version = 2;
        }
        assert_eq!(
            decrypt_message(&mut bob, "bob", "phone", &delivered(body), None),
            Err(E2eError::UnsupportedScheme(2))
        );
    }
}

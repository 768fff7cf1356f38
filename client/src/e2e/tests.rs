//! End-to-end tests of the scheme: a sender and a recipient device going
//! through publish, fetch, verify, encrypt and decrypt.

use super::envelope::{NONCE_LEN, TAG_LEN};
use super::*;

const HELLO: &[u8] = b"hello, bob";

fn context() -> MessageContext<'static> {
    MessageContext {
        sender_user: "alice",
        sender_device: "phone",
        recipient_user: "bob",
        recipient_device: "laptop",
        conversation_id: "alice~bob",
        client_message_id: "c-1",
    }
}

/// Bob's device with `prekeys` one-time prekeys, and the bundle a sender
/// fetches for it (carrying the first one-time prekey, if any), as bytes
/// through the directory's form and verified.
fn bob(prekeys: u32) -> (DeviceKeyring, VerifiedBundle) {
    let mut bob = DeviceKeyring::generate().unwrap();
    let published = bob.generate_one_time_prekeys(prekeys).unwrap();
    let bundle = PrekeyBundle {
        device_keys: bob.published_keys(),
        one_time_prekey: published.first().copied(),
    };
    let fetched = PrekeyBundle::from_bytes(&bundle.to_bytes()).unwrap();
    (bob, fetched.verify().unwrap())
}

fn alice() -> DeviceKeyring {
    DeviceKeyring::generate().unwrap()
}

#[test]
fn round_trip_with_a_one_time_prekey() {
    let alice = alice();
    let (mut bob, mut bundle) = bob(3);
    assert_eq!(bundle.one_time_prekey_id(), Some(0));
    let envelope = alice
        .encrypt_to_device(&mut bundle, &context(), HELLO)
        .unwrap();
    assert_eq!(bundle.one_time_prekey_id(), None, "the sender used it up");
    assert_eq!(
        envelope.len(),
        130 + HELLO.len(),
        "size given in docs/e2e.md"
    );
    assert!(
        !envelope.windows(HELLO.len()).any(|w| w == HELLO),
        "plaintext visible in the envelope"
    );

    let opened = bob
        .decrypt_from_device(&context(), &envelope, Some(&alice.identity_key()))
        .unwrap();
    assert_eq!(opened.plaintext, HELLO);
    assert_eq!(opened.sender_identity, alice.identity_key());
    assert_eq!(opened.one_time_prekey_id, Some(0));
    assert_eq!(bob.one_time_prekey_count(), 2);
}

#[test]
fn later_messages_to_the_same_bundle_go_without_a_one_time_prekey() {
    let alice = alice();
    let (mut bob, mut bundle) = bob(1);
    let first = alice
        .encrypt_to_device(&mut bundle, &context(), b"one")
        .unwrap();
    let second_context = MessageContext {
        client_message_id: "c-2",
        ..context()
    };
    let second = alice
        .encrypt_to_device(&mut bundle, &second_context, b"two")
        .unwrap();
    let a = bob.decrypt_from_device(&context(), &first, None).unwrap();
    let b = bob
        .decrypt_from_device(&second_context, &second, None)
        .unwrap();
    assert_eq!(
        (a.plaintext.as_slice(), a.one_time_prekey_id),
        (&b"one"[..], Some(0))
    );
    assert_eq!(
        (b.plaintext.as_slice(), b.one_time_prekey_id),
        (&b"two"[..], None)
    );
}

#[test]
fn works_without_a_one_time_prekey() {
    let alice = alice();
    let (mut bob, mut bundle) = bob(0);
    assert_eq!(bundle.one_time_prekey_id(), None);
    let envelope = alice
        .encrypt_to_device(&mut bundle, &context(), HELLO)
        .unwrap();
    assert_eq!(envelope[1], 0, "no one-time prekey flag");
    assert_eq!(
        envelope.len(),
        126 + HELLO.len(),
        "size given in docs/e2e.md"
    );
    let opened = bob
        .decrypt_from_device(&context(), &envelope, None)
        .unwrap();
    assert_eq!(opened.plaintext, HELLO);
    assert_eq!(opened.one_time_prekey_id, None);
    // Without a one-time prekey nothing is used up: the same envelope opens
    // again. Replays are caught by `client_message_id`, not here.
    let again = bob
        .decrypt_from_device(&context(), &envelope, None)
        .unwrap();
    assert_eq!(again.plaintext, HELLO);
}

#[test]
fn empty_and_large_plaintexts_round_trip() {
    let alice = alice();
    let (mut bob, mut bundle) = bob(0);
    for plaintext in [Vec::new(), vec![0xA5; 64 * 1024]] {
        let envelope = alice
            .encrypt_to_device(&mut bundle, &context(), &plaintext)
            .unwrap();
        let opened = bob
            .decrypt_from_device(&context(), &envelope, None)
            .unwrap();
        assert_eq!(opened.plaintext, plaintext);
    }
}

#[test]
fn every_message_has_a_fresh_ephemeral_key_and_nonce() {
    let alice = alice();
    let (_bob, mut bundle) = bob(0);
    let a = Envelope::from_bytes(
        &alice
            .encrypt_to_device(&mut bundle, &context(), HELLO)
            .unwrap(),
    )
    .unwrap();
    let b = Envelope::from_bytes(
        &alice
            .encrypt_to_device(&mut bundle, &context(), HELLO)
            .unwrap(),
    )
    .unwrap();
    assert_ne!(a.ephemeral_key, b.ephemeral_key);
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn a_one_time_prekey_opens_one_message_only() {
    let alice = alice();
    let (mut bob, bundle) = bob(2);
    let envelope = alice
        .encrypt_to_device(&mut bundle.clone(), &context(), HELLO)
        .unwrap();
    bob.decrypt_from_device(&context(), &envelope, None)
        .unwrap();

    // The same envelope again: its one-time prekey is gone.
    assert_eq!(
        bob.decrypt_from_device(&context(), &envelope, None),
        Err(E2eError::OneTimePrekeyConsumed { id: 0 })
    );
    // A new message from another sender that was handed the same prekey.
    let carol = DeviceKeyring::generate().unwrap();
    let from_carol = carol
        .encrypt_to_device(&mut bundle.clone(), &context(), HELLO)
        .unwrap();
    assert_eq!(
        bob.decrypt_from_device(&context(), &from_carol, None),
        Err(E2eError::OneTimePrekeyConsumed { id: 0 })
    );
    assert_eq!(bob.one_time_prekey_count(), 1);
}

#[test]
fn a_one_time_prekey_never_issued_is_unknown() {
    let alice = alice();
    let (mut bob, mut bundle) = bob(1);
    let envelope = alice
        .encrypt_to_device(&mut bundle, &context(), HELLO)
        .unwrap();
    let mut parsed = Envelope::from_bytes(&envelope).unwrap();
    parsed.one_time_prekey_id = Some(99);
    assert_eq!(
        bob.decrypt_from_device(&context(), &parsed.to_bytes(), None),
        Err(E2eError::UnknownOneTimePrekey { id: 99 })
    );
}

#[test]
fn tampered_ciphertext_is_rejected_and_uses_nothing_up() {
    let alice = alice();
    let (mut bob, mut bundle) = bob(1);
    let envelope = alice
        .encrypt_to_device(&mut bundle, &context(), HELLO)
        .unwrap();
    let body_start = envelope.len() - HELLO.len() - TAG_LEN;
    // Every byte of the nonce, the ciphertext and the tag.
    for at in body_start - NONCE_LEN..envelope.len() {
        let mut tampered = envelope.clone();
        tampered[at] ^= 0x01;
        assert_eq!(
            bob.decrypt_from_device(&context(), &tampered, None),
            Err(E2eError::DecryptionFailed),
            "byte {at} flipped"
        );
    }
    // Truncated and extended.
    let mut longer = envelope.clone();
    longer.push(0);
    assert_eq!(
        bob.decrypt_from_device(&context(), &longer, None),
        Err(E2eError::DecryptionFailed)
    );
    assert_eq!(
        bob.decrypt_from_device(&context(), &envelope[..envelope.len() - 1], None),
        Err(E2eError::DecryptionFailed)
    );
    // None of it consumed the one-time prekey: the genuine envelope opens.
    assert_eq!(bob.one_time_prekey_count(), 1);
    let opened = bob
        .decrypt_from_device(&context(), &envelope, None)
        .unwrap();
    assert_eq!(opened.plaintext, HELLO);
}

#[test]
fn tampered_header_is_rejected() {
    let alice = alice();
    let (mut bob, mut bundle) = bob(1);
    let envelope = alice
        .encrypt_to_device(&mut bundle, &context(), HELLO)
        .unwrap();
    let header_len = Envelope::from_bytes(&envelope)
        .unwrap()
        .header_bytes()
        .len();
    for at in 0..header_len {
        for bit in [0x01, 0x80] {
            let mut tampered = envelope.clone();
            tampered[at] ^= bit;
            let result = bob.decrypt_from_device(&context(), &tampered, None);
            assert!(result.is_err(), "byte {at} bit {bit:#x} accepted");
        }
    }
    // Fields that parse fine still fail, each with its own error.
    let parsed = Envelope::from_bytes(&envelope).unwrap();
    let mut other_ephemeral = parsed.clone();
    other_ephemeral.ephemeral_key[5] ^= 1;
    let mut other_signed_prekey = parsed.clone();
    other_signed_prekey.signed_prekey[5] ^= 1;
    let mut other_sender = parsed.clone();
    other_sender.sender_identity = DeviceKeyring::generate().unwrap().identity_key();
    let mut no_one_time = parsed;
    no_one_time.one_time_prekey_id = None;
    for (tampered, expected) in [
        (other_ephemeral, E2eError::DecryptionFailed),
        (other_signed_prekey, E2eError::UnknownSignedPrekey),
        (other_sender, E2eError::DecryptionFailed),
        (no_one_time, E2eError::DecryptionFailed),
    ] {
        assert_eq!(
            bob.decrypt_from_device(&context(), &tampered.to_bytes(), None),
            Err(expected)
        );
    }
    assert_eq!(bob.one_time_prekey_count(), 1);
    assert!(bob.decrypt_from_device(&context(), &envelope, None).is_ok());
}

#[test]
fn changed_associated_data_is_rejected() {
    let alice = alice();
    let (mut bob, mut bundle) = bob(0);
    let envelope = alice
        .encrypt_to_device(&mut bundle, &context(), HELLO)
        .unwrap();
    let base = context();
    let changed = [
        MessageContext {
            sender_user: "mallory",
            ..base
        },
        MessageContext {
            sender_device: "tablet",
            ..base
        },
        MessageContext {
            recipient_user: "bobby",
            ..base
        },
        MessageContext {
            recipient_device: "phone",
            ..base
        },
        MessageContext {
            conversation_id: "gAAAAAAAAAAAAAAAA",
            ..base
        },
        MessageContext {
            client_message_id: "c-2",
            ..base
        },
    ];
    for context in changed {
        assert_eq!(
            bob.decrypt_from_device(&context, &envelope, None),
            Err(E2eError::DecryptionFailed),
            "{context:?}"
        );
    }
    assert!(bob.decrypt_from_device(&base, &envelope, None).is_ok());
}

#[test]
fn another_device_cannot_decrypt() {
    let alice = alice();
    let (_bob, mut bundle) = bob(1);
    let envelope = alice
        .encrypt_to_device(&mut bundle, &context(), HELLO)
        .unwrap();
    // Bob's other device: different signed prekey.
    let (mut other_device, _) = self::bob(1);
    assert_eq!(
        other_device.decrypt_from_device(&context(), &envelope, None),
        Err(E2eError::UnknownSignedPrekey)
    );
    // A device that knows the right signed prekey's public key but not the
    // recipient's secrets: swap in its own signed prekey, still fails.
    let (mut eve, _) = self::bob(1);
    let mut parsed = Envelope::from_bytes(&envelope).unwrap();
    parsed.signed_prekey = eve.published_keys().signed_prekey.public_key;
    assert_eq!(
        eve.decrypt_from_device(&context(), &parsed.to_bytes(), None),
        Err(E2eError::DecryptionFailed)
    );
}

#[test]
fn an_unexpected_sender_is_refused() {
    let alice = alice();
    let (mut bob, mut bundle) = bob(1);
    let envelope = alice
        .encrypt_to_device(&mut bundle, &context(), HELLO)
        .unwrap();
    let mallory = DeviceKeyring::generate().unwrap().identity_key();
    assert_eq!(
        bob.decrypt_from_device(&context(), &envelope, Some(&mallory)),
        Err(E2eError::UnexpectedSender)
    );
    assert_eq!(bob.one_time_prekey_count(), 1);
}

#[test]
fn a_bundle_with_a_bad_signature_cannot_be_encrypted_to() {
    let (bob, _) = bob(1);
    let mut keys = bob.published_keys();
    // A server swapping in its own prekey under Bob's identity.
    let (mallory, _) = self::bob(0);
    keys.signed_prekey.public_key = mallory.published_keys().signed_prekey.public_key;
    let forged = PrekeyBundle {
        device_keys: keys,
        one_time_prekey: None,
    };
    let fetched = PrekeyBundle::from_bytes(&forged.to_bytes()).unwrap();
    assert_eq!(
        fetched.verify().unwrap_err(),
        E2eError::BadSignedPrekeySignature
    );
}

#[test]
fn messages_to_a_rotated_signed_prekey_open_until_it_is_forgotten() {
    let alice = alice();
    let (mut bob, mut old_bundle) = bob(0);
    let old = alice
        .encrypt_to_device(&mut old_bundle, &context(), b"old")
        .unwrap();
    let published = bob.rotate_signed_prekey().unwrap();
    assert_ne!(
        published.signed_prekey.public_key,
        old_bundle.signed_prekey()
    );
    let mut new_bundle = PrekeyBundle {
        device_keys: published,
        one_time_prekey: None,
    }
    .verify()
    .unwrap();
    let new = alice
        .encrypt_to_device(&mut new_bundle, &context(), b"new")
        .unwrap();
    assert_eq!(
        bob.decrypt_from_device(&context(), &old, None)
            .unwrap()
            .plaintext,
        b"old"
    );
    bob.forget_previous_signed_prekeys();
    assert_eq!(
        bob.decrypt_from_device(&context(), &old, None),
        Err(E2eError::UnknownSignedPrekey)
    );
    assert_eq!(
        bob.decrypt_from_device(&context(), &new, None)
            .unwrap()
            .plaintext,
        b"new"
    );
}

#[test]
fn one_time_prekey_ids_are_fresh_and_distinct() {
    let mut bob = DeviceKeyring::generate().unwrap();
    let first = bob.generate_one_time_prekeys(3).unwrap();
    let second = bob.generate_one_time_prekeys(2).unwrap();
    let ids: Vec<u32> = first.iter().chain(&second).map(|p| p.id).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    let mut keys: Vec<_> = first.iter().chain(&second).map(|p| p.public_key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 5);
    assert_eq!(bob.one_time_prekey_count(), 5);
}

//! The X3DH-style key agreement and the derivation of the message key.
//!
//! With `IK` the identity keys (in X25519 form), `EK` the initiator's
//! ephemeral key, `SPK` the recipient's signed prekey and `OPK` its one-time
//! prekey:
//!
//! ```text
//! DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)
//! DH3 = DH(EK_A, SPK_B)   DH4 = DH(EK_A, OPK_B)   (only with a one-time prekey)
//! key = HKDF-SHA256(salt = 32 zero bytes,
//!                   ikm  = 32 × 0xFF ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4],
//!                   info = HKDF_INFO) → 32-byte ChaCha20-Poly1305 key
//! ```
//!
//! DH1 and DH2 authenticate both devices to each other, DH3 and DH4 add fresh
//! secrets. Every agreement must be contributory: a low-order public key on
//! either side ends in [`E2eError::WeakKeyAgreement`].

use ring::{aead, hkdf};
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};
use zeroize::Zeroizing;

use super::E2eError;

/// The HKDF `info` for the message key; changing the scheme changes it.
pub const HKDF_INFO: &[u8] = b"Parley E2E v1 X3DH message key";

/// One X25519 agreement, refused if the peer's key is of low order.
fn dh(secret: &StaticSecret, public: &PublicKey) -> Result<SharedSecret, E2eError> {
    let shared = secret.diffie_hellman(public);
    if shared.was_contributory() {
        Ok(shared)
    } else {
        Err(E2eError::WeakKeyAgreement)
    }
}

/// The message key from the agreements' results, in protocol order.
fn derive(shared: &[SharedSecret]) -> Result<aead::LessSafeKey, E2eError> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * (shared.len() + 1)));
    ikm.extend_from_slice(&[0xFF; 32]);
    for secret in shared {
        ikm.extend_from_slice(secret.as_bytes());
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[0u8; 32]).extract(&ikm);
    let okm = prk
        .expand(&[HKDF_INFO], &aead::CHACHA20_POLY1305)
        .map_err(|_| E2eError::Crypto)?;
    Ok(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
}

/// The initiator's side: its identity and ephemeral secrets against the
/// recipient's identity, signed prekey and optional one-time prekey.
pub(crate) fn initiate(
    identity: &StaticSecret,
    ephemeral: &StaticSecret,
    their_identity: &PublicKey,
    their_signed_prekey: &PublicKey,
    their_one_time_prekey: Option<&PublicKey>,
) -> Result<aead::LessSafeKey, E2eError> {
    let mut shared = vec![
        dh(identity, their_signed_prekey)?,
        dh(ephemeral, their_identity)?,
        dh(ephemeral, their_signed_prekey)?,
    ];
    if let Some(one_time) = their_one_time_prekey {
        shared.push(dh(ephemeral, one_time)?);
    }
    derive(&shared)
}

/// The recipient's side: its identity, signed prekey and optional one-time
/// prekey secrets against the initiator's identity and ephemeral keys.
pub(crate) fn respond(
    identity: &StaticSecret,
    signed_prekey: &StaticSecret,
    one_time_prekey: Option<&StaticSecret>,
    their_identity: &PublicKey,
    their_ephemeral: &PublicKey,
) -> Result<aead::LessSafeKey, E2eError> {
    let mut shared = vec![
        dh(signed_prekey, their_identity)?,
        dh(identity, their_ephemeral)?,
        dh(signed_prekey, their_ephemeral)?,
    ];
    if let Some(one_time) = one_time_prekey {
        shared.push(dh(one_time, their_ephemeral)?);
    }
    derive(&shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> StaticSecret {
        StaticSecret::from([byte; 32])
    }

    /// Whether two keys are the same: what one seals, the other opens.
    fn same_key(a: &aead::LessSafeKey, b: &aead::LessSafeKey) -> bool {
        let nonce = [0u8; 12];
        let mut data = b"probe".to_vec();
        a.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::empty(),
            &mut data,
        )
        .unwrap();
        b.open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::empty(),
            &mut data,
        )
        .is_ok()
    }

    #[test]
    fn both_sides_derive_the_same_key() {
        let (ik_a, ek_a, ik_b, spk_b, opk_b) =
            (secret(1), secret(2), secret(3), secret(4), secret(5));
        for with_one_time in [false, true] {
            let opk_pub = PublicKey::from(&opk_b);
            let a = initiate(
                &ik_a,
                &ek_a,
                &PublicKey::from(&ik_b),
                &PublicKey::from(&spk_b),
                with_one_time.then_some(&opk_pub),
            )
            .unwrap();
            let b = respond(
                &ik_b,
                &spk_b,
                with_one_time.then_some(&opk_b),
                &PublicKey::from(&ik_a),
                &PublicKey::from(&ek_a),
            )
            .unwrap();
            assert!(same_key(&a, &b), "with_one_time = {with_one_time}");
            // Leaving out the one-time prekey on one side gives another key.
            let c = respond(
                &ik_b,
                &spk_b,
                (!with_one_time).then_some(&opk_b),
                &PublicKey::from(&ik_a),
                &PublicKey::from(&ek_a),
            )
            .unwrap();
            assert!(!same_key(&a, &c));
        }
    }

    #[test]
    fn low_order_keys_are_refused() {
        let zero = PublicKey::from([0u8; 32]);
        let good = PublicKey::from(&secret(9));
        assert_eq!(
            initiate(&secret(1), &secret(2), &good, &zero, None).unwrap_err(),
            E2eError::WeakKeyAgreement
        );
        assert_eq!(
            respond(&secret(1), &secret(2), None, &good, &zero).unwrap_err(),
            E2eError::WeakKeyAgreement
        );
    }
}

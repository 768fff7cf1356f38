//! What a device may register: a device id and, per notifier kind, the shape
//! of its target. Everything a target becomes part of (a URL path segment, a
//! header, a JSON string) is checked here, before it is stored.

use super::NotifierKind;

/// The longest device id, in bytes.
pub const MAX_DEVICE_ID_LEN: usize = 64;

/// The longest target of any kind, in bytes.
pub const MAX_TARGET_LEN: usize = 4096;

/// Why a device id or target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The device id is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error(
        "device id must be 1 to {MAX_DEVICE_ID_LEN} characters of letters, digits, '.', '_' or '-'"
    )]
    InvalidDeviceId,
    /// `off` is not a kind a device can register.
    #[error("\"off\" is not a push kind")]
    OffKind,
    /// The target does not have the shape its kind needs.
    #[error("invalid {kind} target: {why}")]
    InvalidTarget {
        /// The kind the target was registered for.
        kind: NotifierKind,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Checks a device id.
pub fn check_device_id(device_id: &str) -> Result<(), TargetError> {
    let ok = !device_id.is_empty()
        && device_id.len() <= MAX_DEVICE_ID_LEN
        && device_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(()).ok_or(TargetError::InvalidDeviceId)
}

/// Checks that `target` has the shape a target of `kind` needs:
///
/// - `webhook`: any printable text (passed to the receiver as it is);
/// - `ntfy`: a topic name, 1 to 64 of `[A-Za-z0-9_-]`;
/// - `gotify`: an application token, 1 to 128 of `[A-Za-z0-9._-]`;
/// - `fcm`: a registration token, of `[A-Za-z0-9:_-]`.
pub fn check_target(kind: NotifierKind, target: &str) -> Result<(), TargetError> {
    let invalid = |why| Err(TargetError::InvalidTarget { kind, why });
    if target.is_empty() {
        return invalid("it is empty");
    }
    if target.len() > MAX_TARGET_LEN {
        return invalid("it is too long");
    }
    let all = |ok: fn(u8) -> bool| target.bytes().all(ok);
    match kind {
        NotifierKind::Off => Err(TargetError::OffKind),
        NotifierKind::Webhook => {
            if target.chars().any(char::is_control) {
                return invalid("it has control characters");
            }
            Ok(())
        }
        NotifierKind::Ntfy => {
            if target.len() > 64 || !all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            {
                return invalid("a topic is 1 to 64 letters, digits, '_' or '-'");
            }
            Ok(())
        }
        NotifierKind::Gotify => {
            if target.len() > 128
                || !all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return invalid(
                    "an application token is 1 to 128 letters, digits, '.', '_' or '-'",
                );
            }
            Ok(())
        }
        NotifierKind::Fcm => {
            if !all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-')) {
                return invalid("a registration token is letters, digits, ':', '_' or '-'");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids() {
        for ok in [
            "phone",
            "a",
            "Pixel-8.work_2",
            &"d".repeat(MAX_DEVICE_ID_LEN),
        ] {
            assert_eq!(check_device_id(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", "a b", "a/b", "é", &"d".repeat(MAX_DEVICE_ID_LEN + 1)] {
            assert_eq!(
                check_device_id(bad),
                Err(TargetError::InvalidDeviceId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ntfy_topics_cannot_leave_their_path_segment() {
        assert_eq!(check_target(NotifierKind::Ntfy, "alice_phone-1"), Ok(()));
        for bad in ["", "a/b", "../admin", "a?b", "a b", &"t".repeat(65)] {
            assert!(
                check_target(NotifierKind::Ntfy, bad).is_err(),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn gotify_tokens_cannot_break_a_header() {
        assert_eq!(check_target(NotifierKind::Gotify, "AbC.d_e-F"), Ok(()));
        for bad in ["", "a\r\nX-Evil: 1", "a b", &"t".repeat(129)] {
            assert!(check_target(NotifierKind::Gotify, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fcm_tokens() {
        assert_eq!(
            check_target(NotifierKind::Fcm, "dQw4w9WgXcQ:APA91bH-x_y"),
            Ok(())
        );
        assert!(check_target(NotifierKind::Fcm, "a\"b").is_err());
    }

    #[test]
    fn webhook_targets_are_opaque_but_printable() {
        assert_eq!(
            check_target(NotifierKind::Webhook, "device 42 / région"),
            Ok(())
        );
        assert!(check_target(NotifierKind::Webhook, "a\nb").is_err());
        assert!(check_target(NotifierKind::Webhook, &"x".repeat(MAX_TARGET_LEN + 1)).is_err());
    }

    #[test]
    fn off_is_not_a_target_kind() {
        assert_eq!(
            check_target(NotifierKind::Off, "x"),
            Err(TargetError::OffKind)
        );
    }
}

//! Identifiers that appear inside chat topics: user ids, conversation ids and
//! MQTT client ids.
//!
//! Every id that Parley places in a topic level is validated here, so that a
//! topic built from an id can never contain a level separator (`/`), an MQTT
//! wildcard (`+`, `#`), a NUL or a leading `$`, and never grows past a known
//! length. The rules are documented in `docs/topics.md`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest accepted [`UserId`], in bytes.
pub const USER_ID_MAX_LEN: usize = 32;

/// Longest accepted MQTT client id, in bytes (see [`validate_client_id`]).
pub const CLIENT_ID_MAX_LEN: usize = 64;

/// Separator between the two members of a direct [`ConversationId`].
pub const DIRECT_SEPARATOR: char = '~';

/// Longest accepted [`ConversationId`], in bytes (a direct id of two
/// maximum-length user ids).
pub const CONVERSATION_ID_MAX_LEN: usize = 2 * USER_ID_MAX_LEN + 1;

/// Prefix of every group [`ConversationId`].
const GROUP_PREFIX: char = 'g';

/// Number of random bytes behind a group id.
pub const GROUP_RANDOM_BYTES: usize = 10;

/// Number of base32 characters after the `g` of a group id.
const GROUP_CHARS: usize = 16;

/// RFC 4648 base32 alphabet, lowercased.
const BASE32_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("id is empty")]
    Empty,
    /// The id is longer than allowed.
    #[error("id is {len} bytes long; at most {max} bytes are allowed")]
    TooLong {
        /// The largest accepted length, in bytes.
        max: usize,
        /// The length of the rejected id, in bytes.
        len: usize,
    },
    /// The id contains an uppercase ASCII letter; ids are lowercase.
    #[error("uppercase letter {ch:?} at byte {pos}; ids are lowercase")]
    Uppercase {
        /// The offending letter.
        ch: char,
        /// Its byte offset in the id.
        pos: usize,
    },
    /// The id contains a character outside its alphabet.
    #[error("character {ch:?} at byte {pos} is not allowed")]
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the id.
        pos: usize,
    },
    /// A user id starts with something other than a letter or digit.
    #[error("id starts with {ch:?}; it must start with a lowercase letter or a digit")]
    BadStart {
        /// The first character.
        ch: char,
    },
    /// A direct conversation id names its members out of byte order.
    #[error("direct conversation members must be in byte order (smaller id first)")]
    NotOrdered,
    /// A direct conversation would be between a user and themself.
    #[error("a direct conversation needs two different users")]
    SameUser,
    /// A member of a direct conversation id is not a valid user id.
    #[error("direct conversation member starting at byte {pos}: {source}")]
    BadMember {
        /// Byte offset of the member in the conversation id.
        pos: usize,
        /// Why the member is invalid.
        source: Box<IdError>,
    },
    /// The string has neither of the accepted shapes.
    #[error("{0}")]
    BadForm(&'static str),
}

/// A validated user id (the account name).
///
/// 1 to [`USER_ID_MAX_LEN`] bytes of lowercase ASCII letters, digits, `_`, `-`
/// and `.`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// Validates `s` as a user id.
    pub fn parse(s: &str) -> Result<UserId, IdError> {
        check_user_id(s)?;
        Ok(UserId(s.to_owned()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks `s` against the user id rules without allocating.
pub(crate) fn check_user_id(s: &str) -> Result<(), IdError> {
    check_length(s, USER_ID_MAX_LEN)?;
    for (pos, ch) in s.char_indices() {
        match ch {
            'a'..='z' | '0'..='9' => {}
            '_' | '-' | '.' if pos == 0 => return Err(IdError::BadStart { ch }),
            '_' | '-' | '.' => {}
            'A'..='Z' => return Err(IdError::Uppercase { ch, pos }),
            _ => return Err(IdError::InvalidChar { ch, pos }),
        }
    }
    Ok(())
}

/// Rejects the empty string and strings longer than `max` bytes.
fn check_length(s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > max {
        return Err(IdError::TooLong { max, len: s.len() });
    }
    Ok(())
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for UserId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UserId::parse(s)
    }
}

impl TryFrom<String> for UserId {
    type Error = IdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        check_user_id(&s)?;
        Ok(UserId(s))
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> String {
        id.0
    }
}

/// The two kinds of conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationKind {
    /// A one-to-one conversation, identified by its two members.
    Direct,
    /// A group conversation, identified by a random id.
    Group,
}

/// A validated conversation id.
///
/// Either a direct conversation, `{a}~{b}` where `a` and `b` are user ids and
/// `a < b` in byte order, or a group, `g` followed by 16 lowercase base32
/// characters (RFC 4648 alphabet, no padding).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConversationId(String);

impl ConversationId {
    /// The direct conversation between `a` and `b`, in either order.
    ///
    /// The id is the same whichever member is named first.
    pub fn direct(a: &UserId, b: &UserId) -> Result<ConversationId, IdError> {
        let (first, second) = match a.cmp(b) {
            std::cmp::Ordering::Less => (a, b),
            std::cmp::Ordering::Greater => (b, a),
            std::cmp::Ordering::Equal => return Err(IdError::SameUser),
        };
        Ok(ConversationId(format!("{first}{DIRECT_SEPARATOR}{second}")))
    }

    /// A group id built from caller-supplied random bytes.
    ///
    /// The 80 bits encode to exactly 16 base32 characters, so every byte
    /// array gives a distinct id and every valid group id has one byte array.
    pub fn group_from_random(bytes: [u8; GROUP_RANDOM_BYTES]) -> ConversationId {
        let bits = bytes
            .iter()
            .fold(0u128, |acc, &b| (acc << 8) | u128::from(b));
        let mut id = String::with_capacity(1 + GROUP_CHARS);
        id.push(GROUP_PREFIX);
        for i in (0..GROUP_CHARS).rev() {
            // Masked to five bits, so the index is always within the alphabet.
            let index = ((bits >> (5 * i)) & 0x1f) as usize;
            id.push(char::from(BASE32_ALPHABET[index]));
        }
        ConversationId(id)
    }

    /// Validates `s` as a conversation id of either kind.
    pub fn parse(s: &str) -> Result<ConversationId, IdError> {
        check_conversation_id(s)?;
        Ok(ConversationId(s.to_owned()))
    }

    /// Whether this is a direct or a group conversation.
    pub fn kind(&self) -> ConversationKind {
        if self.0.contains(DIRECT_SEPARATOR) {
            ConversationKind::Direct
        } else {
            ConversationKind::Group
        }
    }

    /// The two members of a direct conversation, smaller id first; `None`
    /// for a group.
    pub fn direct_members(&self) -> Option<(UserId, UserId)> {
        let (a, b) = self.0.split_once(DIRECT_SEPARATOR)?;
        Some((UserId(a.to_owned()), UserId(b.to_owned())))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks `s` against the conversation id rules without allocating.
fn check_conversation_id(s: &str) -> Result<(), IdError> {
    check_length(s, CONVERSATION_ID_MAX_LEN)?;
    if let Some((a, b)) = s.split_once(DIRECT_SEPARATOR) {
        let member = |pos: usize, part: &str| {
            check_user_id(part).map_err(|e| IdError::BadMember {
                pos,
                source: Box::new(e),
            })
        };
        member(0, a)?;
        member(a.len() + DIRECT_SEPARATOR.len_utf8(), b)?;
        return match a.cmp(b) {
            std::cmp::Ordering::Less => Ok(()),
            std::cmp::Ordering::Equal => Err(IdError::SameUser),
            std::cmp::Ordering::Greater => Err(IdError::NotOrdered),
        };
    }
    let Some(rest) = s.strip_prefix(GROUP_PREFIX) else {
        return Err(IdError::BadForm(
            "a conversation id is either `{user}~{user}` or `g` followed by 16 base32 characters",
        ));
    };
    if rest.len() != GROUP_CHARS {
        return Err(IdError::BadForm(
            "a group conversation id is `g` followed by exactly 16 base32 characters",
        ));
    }
    for (i, ch) in rest.char_indices() {
        if !(ch.is_ascii_lowercase() || ('2'..='7').contains(&ch)) {
            let pos = i + GROUP_PREFIX.len_utf8();
            return Err(if ch.is_ascii_uppercase() {
                IdError::Uppercase { ch, pos }
            } else {
                IdError::InvalidChar { ch, pos }
            });
        }
    }
    Ok(())
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ConversationId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for ConversationId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConversationId::parse(s)
    }
}

impl TryFrom<String> for ConversationId {
    type Error = IdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        check_conversation_id(&s)?;
        Ok(ConversationId(s))
    }
}

impl From<ConversationId> for String {
    fn from(id: ConversationId) -> String {
        id.0
    }
}

/// Validates an MQTT client id as sent in CONNECT.
///
/// 1 to [`CLIENT_ID_MAX_LEN`] bytes of printable ASCII, without whitespace,
/// `/`, `+`, `#` or `$` (the router refuses those in client ids).
pub fn validate_client_id(s: &str) -> Result<(), IdError> {
    check_length(s, CLIENT_ID_MAX_LEN)?;
    for (pos, ch) in s.char_indices() {
        if !ch.is_ascii_graphic() || matches!(ch, '/' | '+' | '#' | '$') {
            return Err(IdError::InvalidChar { ch, pos });
        }
    }
    Ok(())
}

/// The router-level client id of `user`'s client `client_id`: `{user}~{client_id}`.
///
/// Usernames never contain `~`, so the first `~` separates the two and no
/// user can name (and so take over) another user's session.
pub fn router_client_id(user: &UserId, client_id: &str) -> String {
    format!("{}{DIRECT_SEPARATOR}{client_id}", user.as_str())
}

/// The router-level client id of Parley's own link on node `node`. It starts
/// with `~`, which no `router_client_id` does, so it cannot collide.
pub fn server_client_id(node: u16) -> String {
    format!("{DIRECT_SEPARATOR}parley{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_client_ids_cannot_collide_across_users() {
        // "a" with client "b~c" is the only way to spell "a~b~c": the user
        // "a~b" (which would give the same id with client "c") cannot exist.
        let a = router_client_id(&user("a"), "b~c");
        assert_eq!(a, "a~b~c");
        assert_eq!(
            UserId::parse("a~b"),
            Err(IdError::InvalidChar { ch: '~', pos: 1 }),
            "a username cannot contain the separator"
        );
        assert!(!server_client_id(0).starts_with(|c: char| c.is_ascii_alphanumeric()));
    }

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid user id")
    }

    #[test]
    fn user_id_accepts_its_alphabet() {
        for ok in [
            "a",
            "0",
            "alice",
            "bob.smith",
            "x_y-z.9",
            "9lives",
            &"a".repeat(32),
        ] {
            assert_eq!(
                UserId::parse(ok).map(|u| u.as_str().to_owned()),
                Ok(ok.to_owned())
            );
        }
    }

    #[test]
    fn user_id_rejections_are_specific() {
        assert_eq!(UserId::parse(""), Err(IdError::Empty));
        assert_eq!(
            UserId::parse(&"a".repeat(33)),
            Err(IdError::TooLong { max: 32, len: 33 })
        );
        assert_eq!(
            UserId::parse("alIce"),
            Err(IdError::Uppercase { ch: 'I', pos: 2 })
        );
        assert_eq!(UserId::parse("_a"), Err(IdError::BadStart { ch: '_' }));
        assert_eq!(UserId::parse(".a"), Err(IdError::BadStart { ch: '.' }));
        assert_eq!(UserId::parse("-a"), Err(IdError::BadStart { ch: '-' }));
        for (bad, ch, pos) in [
            ("a/b", '/', 1),
            ("a+", '+', 1),
            ("#", '#', 0),
            ("a\0", '\0', 1),
            ("a~b", '~', 1),
            ("$sys", '$', 0),
            ("a b", ' ', 1),
            ("zoë", 'ë', 2),
        ] {
            assert_eq!(
                UserId::parse(bad),
                Err(IdError::InvalidChar { ch, pos }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn user_id_length_is_counted_in_bytes() {
        // 11 two-byte characters: 22 bytes, under the limit, but not ASCII.
        assert!(matches!(
            UserId::parse(&"é".repeat(11)),
            Err(IdError::InvalidChar { ch: 'é', pos: 0 })
        ));
        assert_eq!(
            UserId::parse(&"é".repeat(17)),
            Err(IdError::TooLong { max: 32, len: 34 })
        );
    }

    #[test]
    fn error_messages_name_the_problem() {
        assert_eq!(
            IdError::TooLong { max: 32, len: 40 }.to_string(),
            "id is 40 bytes long; at most 32 bytes are allowed"
        );
        assert_eq!(
            IdError::Uppercase { ch: 'A', pos: 0 }.to_string(),
            "uppercase letter 'A' at byte 0; ids are lowercase"
        );
        let member = ConversationId::parse("alice~Bob").unwrap_err();
        assert_eq!(
            member.to_string(),
            "direct conversation member starting at byte 6: uppercase letter 'B' at byte 0; ids are lowercase"
        );
    }

    #[test]
    fn user_id_serde_validates() {
        use serde::de::value::{Error as DeError, StringDeserializer};
        use serde::de::IntoDeserializer;
        let ok: Result<UserId, DeError> = UserId::deserialize(
            IntoDeserializer::<DeError>::into_deserializer("bob".to_owned()),
        );
        assert_eq!(ok, Ok(user("bob")));
        let bad: StringDeserializer<DeError> = "Bob".to_owned().into_deserializer();
        let err = UserId::deserialize(bad).unwrap_err();
        assert!(err.to_string().contains("uppercase"), "{err}");
        assert_eq!(String::from(user("carol")), "carol");
        assert_eq!("dave".parse::<UserId>(), Ok(user("dave")));
    }

    #[test]
    fn direct_id_is_the_same_from_both_sides() {
        let (alice, bob) = (user("alice"), user("bob"));
        let ab = ConversationId::direct(&alice, &bob).unwrap();
        let ba = ConversationId::direct(&bob, &alice).unwrap();
        assert_eq!(ab, ba);
        assert_eq!(ab.as_str(), "alice~bob");
        assert_eq!(ab.to_string(), "alice~bob");
        assert_eq!(ab.kind(), ConversationKind::Direct);
        assert_eq!(ab.direct_members(), Some((alice.clone(), bob)));
        assert_eq!(
            ConversationId::direct(&alice, &alice),
            Err(IdError::SameUser)
        );
    }

    #[test]
    fn direct_id_orders_by_bytes() {
        // '.' (0x2e) < '0' (0x30) < 'a' (0x61): byte order, not "natural" order.
        let id = ConversationId::direct(&user("a0"), &user("a.")).unwrap();
        assert_eq!(id.as_str(), "a.~a0");
        let id = ConversationId::direct(&user("ab"), &user("a")).unwrap();
        assert_eq!(id.as_str(), "a~ab");
    }

    #[test]
    fn direct_id_parse_checks_members_and_order() {
        assert_eq!(
            ConversationId::parse("alice~bob").map(|c| c.kind()),
            Ok(ConversationKind::Direct)
        );
        assert_eq!(ConversationId::parse("bob~alice"), Err(IdError::NotOrdered));
        assert_eq!(ConversationId::parse("bob~bob"), Err(IdError::SameUser));
        assert_eq!(
            ConversationId::parse("~bob"),
            Err(IdError::BadMember {
                pos: 0,
                source: Box::new(IdError::Empty)
            })
        );
        assert_eq!(
            ConversationId::parse("alice~"),
            Err(IdError::BadMember {
                pos: 6,
                source: Box::new(IdError::Empty)
            })
        );
        assert_eq!(
            ConversationId::parse("a~b~c"),
            Err(IdError::BadMember {
                pos: 2,
                source: Box::new(IdError::InvalidChar { ch: '~', pos: 1 })
            })
        );
        assert_eq!(
            ConversationId::parse("a~b/c"),
            Err(IdError::BadMember {
                pos: 2,
                source: Box::new(IdError::InvalidChar { ch: '/', pos: 1 })
            })
        );
        let long = format!("{}~{}", "a".repeat(32), "b".repeat(32));
        assert!(ConversationId::parse(&long).is_ok());
        let too_long = format!("{}~{}", "a".repeat(32), "b".repeat(33));
        assert_eq!(
            ConversationId::parse(&too_long),
            Err(IdError::TooLong { max: 65, len: 66 })
        );
    }

    #[test]
    fn group_id_encodes_rfc4648_base32() {
        // RFC 4648 section 10 vectors, lowercased: "foobar" -> "mzxw6ytboi".
        // Ten bytes give exactly 16 characters with no padding.
        let id = ConversationId::group_from_random(*b"foobarbaz!");
        assert_eq!(id.as_str(), "gmzxw6ytbojrgc6rb");
        assert_eq!(
            ConversationId::group_from_random([0; 10]).as_str(),
            "gaaaaaaaaaaaaaaaa"
        );
        assert_eq!(
            ConversationId::group_from_random([0xff; 10]).as_str(),
            "g7777777777777777"
        );
        assert_eq!(id.kind(), ConversationKind::Group);
        assert_eq!(id.direct_members(), None);
        assert_eq!(ConversationId::parse(id.as_str()), Ok(id));
    }

    #[test]
    fn group_id_parse_is_strict() {
        assert!(ConversationId::parse("gabcdefghijklmnop").is_ok());
        assert!(ConversationId::parse("g2345672345672345").is_ok());
        assert!(matches!(
            ConversationId::parse("gabc"),
            Err(IdError::BadForm(_))
        ));
        assert!(matches!(
            ConversationId::parse("gabcdefghijklmnopq"),
            Err(IdError::BadForm(_))
        ));
        assert_eq!(
            ConversationId::parse("gabcdefghijklmno1"),
            Err(IdError::InvalidChar { ch: '1', pos: 16 })
        );
        assert_eq!(
            ConversationId::parse("gabcdefghijklmnoP"),
            Err(IdError::Uppercase { ch: 'P', pos: 16 })
        );
        assert_eq!(
            ConversationId::parse("gabcdefghijklmno="),
            Err(IdError::InvalidChar { ch: '=', pos: 16 })
        );
        assert!(matches!(
            ConversationId::parse("habcdefghijklmnop"),
            Err(IdError::BadForm(_))
        ));
        assert!(matches!(
            ConversationId::parse("alice"),
            Err(IdError::BadForm(_))
        ));
        assert_eq!(ConversationId::parse(""), Err(IdError::Empty));
        // Multi-byte characters of the right byte length are rejected, not split.
        assert!(matches!(
            ConversationId::parse("gabcdefghijklmné"),
            Err(IdError::InvalidChar { ch: 'é', pos: 15 })
        ));
    }

    #[test]
    fn conversation_id_serde_validates() {
        use serde::de::value::{Error as DeError, StrDeserializer};
        use serde::de::IntoDeserializer;
        let de: StrDeserializer<DeError> = "bob~alice".into_deserializer();
        assert!(ConversationId::deserialize(de).is_err());
        let de: StrDeserializer<DeError> = "alice~bob".into_deserializer();
        assert_eq!(
            ConversationId::deserialize(de).map(String::from),
            Ok("alice~bob".to_owned())
        );
    }

    #[test]
    fn client_id_rules() {
        for ok in ["a", "phone-1", "ABC_def.9", &"z".repeat(64), "~!@%^&*()"] {
            assert_eq!(validate_client_id(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(validate_client_id(""), Err(IdError::Empty));
        assert_eq!(
            validate_client_id(&"z".repeat(65)),
            Err(IdError::TooLong { max: 64, len: 65 })
        );
        for (bad, ch, pos) in [
            ("a/b", '/', 1),
            ("+", '+', 0),
            ("a#", '#', 1),
            ("x$y", '$', 1),
            ("a\0", '\0', 1),
            ("a b", ' ', 1),
            ("a\tb", '\t', 1),
            ("a\n", '\n', 1),
            ("\u{7f}", '\u{7f}', 0),
            ("né", 'é', 1),
        ] {
            assert_eq!(
                validate_client_id(bad),
                Err(IdError::InvalidChar { ch, pos }),
                "{bad:?}"
            );
        }
    }
}

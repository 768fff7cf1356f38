//! Parley's chat topic tree and the generic MQTT topic rules it rests on.
//!
//! The chat namespace is every topic whose first level is one of
//! [`CHAT_NAMESPACE`]. Within it only the shapes of [`ChatTopic`] exist; the
//! tree is documented in `docs/topics.md`. The generic MQTT functions
//! ([`validate_topic_name`], [`validate_topic_filter`],
//! [`topic_matches_filter`], [`filter_is_subset`]) follow MQTT 3.1.1 / 5
//! section 4.7.

use std::fmt;

use crate::ids::{ConversationId, IdError, UserId};

/// First levels that make up the chat namespace.
pub const CHAT_NAMESPACE: [&str; 7] = ["u", "s", "r", "t", "p", "q", "a"];

/// Longest topic name or filter MQTT can carry, in bytes.
pub const TOPIC_MAX_LEN: usize = 65_535;

/// Last level of a user's inbox topic.
const INBOX_LEVEL: &str = "i";

/// Last level of a user's typing feed topic.
const TYPING_FEED_LEVEL: &str = "t";

/// Why a topic name, topic filter or chat topic is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic or filter is the empty string.
    #[error("topic is empty")]
    Empty,
    /// The topic or filter is longer than MQTT allows.
    #[error("topic is {len} bytes long; at most 65535 bytes are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The topic or filter contains U+0000.
    #[error("NUL character at byte {pos}")]
    Nul {
        /// Byte offset of the NUL.
        pos: usize,
    },
    /// A topic name (as opposed to a filter) contains `+` or `#`.
    #[error("wildcard {ch:?} at byte {pos} is not allowed in a topic name")]
    WildcardInName {
        /// The wildcard character.
        ch: char,
        /// Its byte offset.
        pos: usize,
    },
    /// A filter level contains `+` or `#` next to other characters.
    #[error("wildcard {ch:?} must be alone in its level (level {level})")]
    WildcardNotAlone {
        /// The wildcard character.
        ch: char,
        /// Zero-based index of the level.
        level: usize,
    },
    /// A filter has `#` before its last level.
    #[error("'#' must be the last level of a filter (found at level {level})")]
    HashNotLast {
        /// Zero-based index of the level holding `#`.
        level: usize,
    },
    /// A chat-namespace topic does not have one of the tree's shapes.
    #[error("not a topic of the chat tree; expected {expected}")]
    BadShape {
        /// The shapes allowed under this first level.
        expected: &'static str,
    },
    /// A level that must be a user id is not one.
    #[error("bad user id in level {level}: {source}")]
    BadUser {
        /// Zero-based index of the level.
        level: usize,
        /// Why it is not a user id.
        source: IdError,
    },
    /// A level that must be a conversation id is not one.
    #[error("bad conversation id in level {level}: {source}")]
    BadConversation {
        /// Zero-based index of the level.
        level: usize,
        /// Why it is not a conversation id.
        source: IdError,
    },
}

/// A topic of Parley's chat tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChatTopic {
    /// `u/{user}/i`: the user's inbox (server to user; messages, receipts, errors).
    Inbox(UserId),
    /// `u/{user}/t`: typing notifications relayed to the user (server to user, QoS 0).
    TypingFeed(UserId),
    /// `s/{conv}`: send a message to a conversation (client to server).
    Send(ConversationId),
    /// `r/{conv}`: delivery and read receipts for a conversation (client to server).
    Receipt(ConversationId),
    /// `t/{conv}`: typing in a conversation (client to server).
    Typing(ConversationId),
    /// `p/{user}`: the user's presence (server-published, retained).
    Presence(UserId),
    /// `q/{user}`: requests from the user (client to server).
    Request(UserId),
    /// `a/{user}`: answers to the user's requests (server to client).
    Answer(UserId),
}

impl ChatTopic {
    /// Parses a topic name against the chat tree.
    ///
    /// `Ok(None)` if the topic is outside the chat namespace; `Err` if it is
    /// inside but is not a valid topic name or has none of the tree's shapes.
    pub fn parse(topic: &str) -> Result<Option<ChatTopic>, TopicError> {
        if !is_chat_namespace(topic) {
            return Ok(None);
        }
        validate_topic_name(topic)?;
        let levels: Vec<&str> = topic.split('/').collect();
        let parsed = match levels.as_slice() {
            ["u", user, last] => {
                let user = user_level(1, user)?;
                match *last {
                    INBOX_LEVEL => ChatTopic::Inbox(user),
                    TYPING_FEED_LEVEL => ChatTopic::TypingFeed(user),
                    _ => return Err(shape_error("u")),
                }
            }
            ["s", conv] => ChatTopic::Send(conversation_level(1, conv)?),
            ["r", conv] => ChatTopic::Receipt(conversation_level(1, conv)?),
            ["t", conv] => ChatTopic::Typing(conversation_level(1, conv)?),
            ["p", user] => ChatTopic::Presence(user_level(1, user)?),
            ["q", user] => ChatTopic::Request(user_level(1, user)?),
            ["a", user] => ChatTopic::Answer(user_level(1, user)?),
            [first, ..] => return Err(shape_error(first)),
            // `split` always yields at least one level.
            [] => return Err(TopicError::Empty),
        };
        Ok(Some(parsed))
    }

    /// The topic name of this chat topic.
    ///
    /// Built by concatenation rather than `format!`: every chat message
    /// builds one per member it is delivered to.
    pub fn topic(&self) -> String {
        match self {
            ChatTopic::Inbox(u) => user_feed(u.as_str(), INBOX_LEVEL),
            ChatTopic::TypingFeed(u) => user_feed(u.as_str(), TYPING_FEED_LEVEL),
            ChatTopic::Send(c) => ["s/", c.as_str()].concat(),
            ChatTopic::Receipt(c) => ["r/", c.as_str()].concat(),
            ChatTopic::Typing(c) => ["t/", c.as_str()].concat(),
            ChatTopic::Presence(u) => ["p/", u.as_str()].concat(),
            ChatTopic::Request(u) => ["q/", u.as_str()].concat(),
            ChatTopic::Answer(u) => ["a/", u.as_str()].concat(),
        }
    }
}

impl fmt::Display for ChatTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.topic())
    }
}

/// Parses level `level` of a chat topic as a user id.
fn user_level(level: usize, s: &str) -> Result<UserId, TopicError> {
    UserId::parse(s).map_err(|source| TopicError::BadUser { level, source })
}

/// Parses level `level` of a chat topic as a conversation id.
fn conversation_level(level: usize, s: &str) -> Result<ConversationId, TopicError> {
    ConversationId::parse(s).map_err(|source| TopicError::BadConversation { level, source })
}

/// The shape error for a chat topic whose first level is `first`.
fn shape_error(first: &str) -> TopicError {
    let expected = match first {
        "u" => "u/{user}/i or u/{user}/t",
        "s" => "s/{conversation}",
        "r" => "r/{conversation}",
        "t" => "t/{conversation}",
        "p" => "p/{user}",
        "q" => "q/{user}",
        "a" => "a/{user}",
        _ => "a chat topic",
    };
    TopicError::BadShape { expected }
}

/// `u/{user}/i`: the user's inbox.
pub fn inbox_topic(user: &UserId) -> String {
    user_feed(user.as_str(), INBOX_LEVEL)
}

/// `u/{user}/i` for a user id not parsed yet, such as a stored member's;
/// `None` if `user` is not a valid user id.
pub fn inbox_topic_of(user: &str) -> Option<String> {
    crate::ids::check_user_id(user).ok()?;
    Some(user_feed(user, INBOX_LEVEL))
}

/// `u/{user}/{level}`, for a user id already checked.
fn user_feed(user: &str, level: &str) -> String {
    ["u/", user, "/", level].concat()
}

/// `u/{user}/t`: the user's typing feed.
pub fn typing_feed_topic(user: &UserId) -> String {
    user_feed(user.as_str(), TYPING_FEED_LEVEL)
}

/// `p/{user}`: the user's retained presence.
pub fn presence_topic(user: &UserId) -> String {
    ChatTopic::Presence(user.clone()).topic()
}

/// `a/{user}`: answers to the user's requests.
pub fn answer_topic(user: &UserId) -> String {
    ChatTopic::Answer(user.clone()).topic()
}

/// The first level of a topic or filter.
fn first_level(topic_or_filter: &str) -> &str {
    topic_or_filter
        .split_once('/')
        .map_or(topic_or_filter, |(first, _)| first)
}

/// Whether the first level of `topic_or_filter` is a chat namespace letter.
///
/// A filter whose first level is a wildcard is not *in* the namespace but can
/// still reach it; see [`filter_can_reach_chat_namespace`].
pub fn is_chat_namespace(topic_or_filter: &str) -> bool {
    CHAT_NAMESPACE.contains(&first_level(topic_or_filter))
}

/// Whether `filter` could match a chat-namespace topic: its first level is a
/// namespace letter or a wildcard.
pub fn filter_can_reach_chat_namespace(filter: &str) -> bool {
    let first = first_level(filter);
    first == "+" || first == "#" || CHAT_NAMESPACE.contains(&first)
}

/// First level of an MQTT 5 shared subscription (`$share/{group}/{filter}`).
pub const SHARED_SUBSCRIPTION_PREFIX: &str = "$share";

/// Whether `filter` carries an MQTT 5 shared-subscription prefix, which
/// must be removed before the filter is judged.
pub fn is_shared_subscription(filter: &str) -> bool {
    first_level(filter) == SHARED_SUBSCRIPTION_PREFIX
}

/// Checks the rules common to topic names and filters: non-empty, at most
/// [`TOPIC_MAX_LEN`] bytes, no NUL.
fn validate_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > TOPIC_MAX_LEN {
        return Err(TopicError::TooLong { len: s.len() });
    }
    if let Some(pos) = s.find('\0') {
        return Err(TopicError::Nul { pos });
    }
    Ok(())
}

/// Validates an MQTT topic name (what PUBLISH carries): non-empty, at most
/// 65535 bytes, no wildcards, no NUL.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    validate_common(topic)?;
    if let Some((pos, ch)) = topic.char_indices().find(|&(_, c)| c == '+' || c == '#') {
        return Err(TopicError::WildcardInName { ch, pos });
    }
    Ok(())
}

/// Validates an MQTT topic filter (what SUBSCRIBE carries): non-empty, at
/// most 65535 bytes, no NUL, `+` alone in its level, `#` alone in the last
/// level.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    validate_common(filter)?;
    let mut levels = filter.split('/').enumerate().peekable();
    while let Some((level, text)) = levels.next() {
        let is_last = levels.peek().is_none();
        if text.contains('#') {
            if text != "#" {
                return Err(TopicError::WildcardNotAlone { ch: '#', level });
            }
            if !is_last {
                return Err(TopicError::HashNotLast { level });
            }
        }
        if text.contains('+') && text != "+" {
            return Err(TopicError::WildcardNotAlone { ch: '+', level });
        }
    }
    Ok(())
}

/// Whether the first level of a filter is a wildcard.
fn starts_with_wildcard(filter: &str) -> bool {
    matches!(first_level(filter), "+" | "#")
}

/// Whether `topic` matches `filter` under MQTT rules.
///
/// `+` matches exactly one level (possibly empty), `#` matches the parent
/// level and any number of levels below it, and topics starting with `$` are
/// not matched by a filter whose first level is a wildcard. Returns `false`
/// if `topic` is not a valid topic name or `filter` not a valid filter.
pub fn topic_matches_filter(topic: &str, filter: &str) -> bool {
    if validate_topic_name(topic).is_err() || validate_topic_filter(filter).is_err() {
        return false;
    }
    if topic.starts_with('$') && starts_with_wildcard(filter) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    let mut filter_levels = filter.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            _ => return false,
        }
    }
}

/// Whether every topic that `filter` can match is also matched by `of`.
///
/// Follows MQTT matching exactly, including the rule that `$` topics escape
/// a leading wildcard; it never claims a containment that does not hold.
/// `false` if either is not a valid filter.
pub fn filter_is_subset(filter: &str, of: &str) -> bool {
    if validate_topic_filter(filter).is_err() || validate_topic_filter(of).is_err() {
        return false;
    }
    // A literal `$` first level names topics no leading wildcard matches.
    if filter.starts_with('$') && starts_with_wildcard(of) {
        return false;
    }
    let sub: Vec<&str> = filter.split('/').collect();
    let sup: Vec<&str> = of.split('/').collect();
    // A trailing `#` also matches its parent, except where the parent would
    // be the empty topic (`#`, `/#`): there it matches one level or more.
    let hash_needs_a_level = sub == ["#"] || sub == ["", "#"];
    for i in 0..sub.len().max(sup.len()) {
        match (sub.get(i).copied(), sup.get(i).copied()) {
            (_, Some("#")) => return true,
            (Some("#"), Some("+")) => {
                return hash_needs_a_level && sup.len() == i + 2 && sup[i + 1] == "#"
            }
            (Some("#"), _) | (None, _) | (_, None) => return false,
            (Some(_), Some("+")) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid user id")
    }

    fn conv(s: &str) -> ConversationId {
        ConversationId::parse(s).expect("valid conversation id")
    }

    #[test]
    fn every_chat_topic_round_trips() {
        let group = ConversationId::group_from_random([7; 10]);
        let topics = [
            (ChatTopic::Inbox(user("alice")), "u/alice/i"),
            (ChatTopic::TypingFeed(user("alice")), "u/alice/t"),
            (ChatTopic::Send(conv("alice~bob")), "s/alice~bob"),
            (ChatTopic::Receipt(conv("alice~bob")), "r/alice~bob"),
            (ChatTopic::Typing(conv("alice~bob")), "t/alice~bob"),
            (ChatTopic::Send(group.clone()), "s/ga4dqobyha4dqobyh"),
            (ChatTopic::Presence(user("bob")), "p/bob"),
            (ChatTopic::Request(user("bob")), "q/bob"),
            (ChatTopic::Answer(user("bob")), "a/bob"),
        ];
        for (chat, text) in topics {
            assert_eq!(chat.topic(), text);
            assert_eq!(chat.to_string(), text);
            assert_eq!(ChatTopic::parse(text), Ok(Some(chat)), "{text}");
        }
    }

    #[test]
    fn topic_builders_agree_with_chat_topic() {
        let u = user("carol");
        assert_eq!(inbox_topic(&u), "u/carol/i");
        assert_eq!(typing_feed_topic(&u), "u/carol/t");
        assert_eq!(presence_topic(&u), "p/carol");
        assert_eq!(answer_topic(&u), "a/carol");
        assert_eq!(inbox_topic_of("carol").as_deref(), Some("u/carol/i"));
        assert_eq!(
            ChatTopic::parse("u/carol/i").unwrap().unwrap().topic(),
            "u/carol/i"
        );
    }

    #[test]
    fn an_invalid_stored_member_has_no_inbox() {
        for bad in ["", "Carol", "_carol", "car/ol", "car+ol", "#"] {
            assert_eq!(inbox_topic_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn topics_outside_the_namespace_are_none() {
        for t in [
            "devices/alice/temp",
            "uu/alice/i",
            "/u/alice/i",
            "$SYS/broker",
            "U/alice/i",
            "x",
            "",
            "sensor/+",
        ] {
            assert_eq!(ChatTopic::parse(t), Ok(None), "{t:?}");
        }
    }

    #[test]
    fn malformed_chat_topics_are_errors() {
        let shape = |expected| Err(TopicError::BadShape { expected });
        assert_eq!(ChatTopic::parse("u"), shape("u/{user}/i or u/{user}/t"));
        assert_eq!(
            ChatTopic::parse("u/alice"),
            shape("u/{user}/i or u/{user}/t")
        );
        assert_eq!(
            ChatTopic::parse("u/alice/x"),
            shape("u/{user}/i or u/{user}/t")
        );
        assert_eq!(
            ChatTopic::parse("u/alice/i/x"),
            shape("u/{user}/i or u/{user}/t")
        );
        assert_eq!(ChatTopic::parse("s"), shape("s/{conversation}"));
        assert_eq!(ChatTopic::parse("s/alice~bob/x"), shape("s/{conversation}"));
        assert_eq!(ChatTopic::parse("p/bob/x"), shape("p/{user}"));
        assert_eq!(
            ChatTopic::parse("a/"),
            Err(TopicError::BadUser {
                level: 1,
                source: IdError::Empty
            })
        );
        assert_eq!(
            ChatTopic::parse("u/Alice/i"),
            Err(TopicError::BadUser {
                level: 1,
                source: IdError::Uppercase { ch: 'A', pos: 0 }
            })
        );
        assert_eq!(
            ChatTopic::parse("s/bob~alice"),
            Err(TopicError::BadConversation {
                level: 1,
                source: IdError::NotOrdered
            })
        );
        assert_eq!(
            ChatTopic::parse("u/+/i"),
            Err(TopicError::WildcardInName { ch: '+', pos: 2 })
        );
        assert_eq!(ChatTopic::parse("q/a\0"), Err(TopicError::Nul { pos: 3 }));
    }

    #[test]
    fn chat_errors_read_well() {
        let e = ChatTopic::parse("u/alice/x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "not a topic of the chat tree; expected u/{user}/i or u/{user}/t"
        );
        let e = ChatTopic::parse("s/bob~alice").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad conversation id in level 1: direct conversation members must be in byte order (smaller id first)"
        );
    }

    #[test]
    fn namespace_detection() {
        for t in [
            "u", "u/x", "s/a~b", "r/x", "t/x", "p/x", "q/x", "a/x", "a/#",
        ] {
            assert!(is_chat_namespace(t), "{t}");
            assert!(filter_can_reach_chat_namespace(t), "{t}");
        }
        for t in ["b/x", "uu", "", "/u", "$SYS/#", "devices/#"] {
            assert!(!is_chat_namespace(t), "{t}");
            assert!(!filter_can_reach_chat_namespace(t), "{t}");
        }
        for f in ["#", "+", "+/alice/i", "+/#"] {
            assert!(!is_chat_namespace(f), "{f}");
            assert!(filter_can_reach_chat_namespace(f), "{f}");
        }
    }

    #[test]
    fn shared_subscription_detection() {
        assert!(is_shared_subscription("$share/g/u/bob/i"));
        assert!(is_shared_subscription("$share"));
        assert!(!is_shared_subscription("$shared/x"));
        assert!(!is_shared_subscription("a/$share/x"));
    }

    #[test]
    fn topic_name_validation() {
        for ok in ["a", "/", "a/b/c", "$SYS/x", "a//b", "é/ü", " "] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(
            validate_topic_name("a/+"),
            Err(TopicError::WildcardInName { ch: '+', pos: 2 })
        );
        assert_eq!(
            validate_topic_name("a#"),
            Err(TopicError::WildcardInName { ch: '#', pos: 1 })
        );
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::Nul { pos: 1 }));
        assert_eq!(validate_topic_name(&"a".repeat(65_535)), Ok(()));
        assert_eq!(
            validate_topic_name(&"a".repeat(65_536)),
            Err(TopicError::TooLong { len: 65_536 })
        );
    }

    #[test]
    fn topic_filter_validation() {
        for ok in [
            "#", "+", "a/#", "+/+", "a/+/b", "/#", "+/#", "a//+", "$SYS/#",
        ] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(validate_topic_filter(""), Err(TopicError::Empty));
        assert_eq!(
            validate_topic_filter("a/#/b"),
            Err(TopicError::HashNotLast { level: 1 })
        );
        assert_eq!(
            validate_topic_filter("a#"),
            Err(TopicError::WildcardNotAlone { ch: '#', level: 0 })
        );
        assert_eq!(
            validate_topic_filter("a/b+"),
            Err(TopicError::WildcardNotAlone { ch: '+', level: 1 })
        );
        assert_eq!(
            validate_topic_filter("a/+#"),
            Err(TopicError::WildcardNotAlone { ch: '#', level: 1 })
        );
        assert_eq!(
            validate_topic_filter("a/\0"),
            Err(TopicError::Nul { pos: 2 })
        );
        assert_eq!(
            validate_topic_filter(&"+".repeat(65_536)),
            Err(TopicError::TooLong { len: 65_536 })
        );
    }

    #[test]
    fn matching_follows_mqtt() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/b", "a/+", true),
            ("a/b", "+/b", true),
            ("a/b", "+/+", true),
            ("a/b", "#", true),
            ("a/b", "a/#", true),
            ("a", "a/#", true),
            ("a/b/c", "a/#", true),
            ("a/b/c", "a/+", false),
            ("a", "a/+", false),
            ("a/b", "a", false),
            ("a/b", "a/b/c", false),
            ("a/b", "A/b", false),
            ("/", "+/+", true),
            ("/a", "+/a", true),
            ("/a", "#", true),
            ("a/", "a/+", true),
            ("a/", "a/#", true),
            ("$SYS/x", "#", false),
            ("$SYS/x", "+/x", false),
            ("$SYS/x", "$SYS/#", true),
            ("$SYS/x", "$SYS/+", true),
            ("a/$x", "a/+", true),
            ("u/alice/i", "u/+/i", true),
            ("u/alice/i", "u/bob/i", false),
        ];
        for (topic, filter, expected) in cases {
            assert_eq!(
                topic_matches_filter(topic, filter),
                expected,
                "{topic} against {filter}"
            );
        }
    }

    #[test]
    fn matching_rejects_invalid_input() {
        assert!(!topic_matches_filter("a/+", "#"));
        assert!(!topic_matches_filter("", "#"));
        assert!(!topic_matches_filter("a/b", "a/#/b"));
        assert!(!topic_matches_filter("a/b", "a/b#"));
    }

    #[test]
    fn subset_cases() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/b", "a/+", true),
            ("a/b", "#", true),
            ("a/+", "a/#", true),
            ("a/#", "a/#", true),
            ("a/#", "#", true),
            ("a", "a/#", true),
            ("#", "#", true),
            ("#", "+/#", true),
            ("/#", "/+/#", true),
            ("/#", "+/+/#", true),
            ("+/#", "+/+/#", false),
            ("a/#", "a/+/#", false),
            ("+/#", "#", true),
            ("+", "#", true),
            ("a/+", "a/b", false),
            ("a/#", "a/+", false),
            ("a/#", "a/+/#", false),
            ("a/+/#", "a/#", true),
            ("#", "+", false),
            ("#", "a/#", false),
            ("+/+", "+/#", true),
            ("+/+", "+", false),
            ("a/b/c", "a/+", false),
            ("$SYS/x", "#", false),
            ("$SYS/x", "+/x", false),
            ("$SYS/x", "$SYS/#", true),
            ("+/x", "$SYS/x", false),
            ("devices/alice/#", "devices/alice/#", true),
            ("devices/bob/#", "devices/alice/#", false),
            ("a/#/b", "#", false),
            ("a", "a#", false),
        ];
        for (filter, of, expected) in cases {
            assert_eq!(
                filter_is_subset(filter, of),
                expected,
                "{filter} within {of}"
            );
        }
    }

    /// Every valid filter of at most `depth` levels over `alphabet`.
    fn filters(alphabet: &[&str], depth: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut layer: Vec<String> = alphabet.iter().map(|s| (*s).to_owned()).collect();
        for _ in 0..depth {
            out.extend(layer.iter().cloned());
            layer = layer
                .iter()
                .flat_map(|prefix| alphabet.iter().map(move |l| format!("{prefix}/{l}")))
                .collect();
        }
        out.retain(|f| validate_topic_filter(f).is_ok());
        out
    }

    /// `filter_is_subset` agrees exactly with the set semantics of
    /// `topic_matches_filter` over every small filter pair: topics include a
    /// level no filter names and are one level deeper than any filter, so a
    /// non-subset pair always has a witness among them.
    #[test]
    fn subset_is_exact_on_small_filters() {
        let filters = filters(&["a", "$s", "", "+", "#"], 3);
        let topics = filters_as_topics(&["a", "$s", "", "z"], 4);
        assert!(filters.len() > 100 && topics.len() > 300);
        for f in &filters {
            for g in &filters {
                let by_topics = topics
                    .iter()
                    .all(|t| !topic_matches_filter(t, f) || topic_matches_filter(t, g));
                assert_eq!(filter_is_subset(f, g), by_topics, "{f:?} within {g:?}");
            }
        }
    }

    /// Every topic of at most `depth` levels over `alphabet`.
    fn filters_as_topics(alphabet: &[&str], depth: usize) -> Vec<String> {
        let topics = filters(alphabet, depth);
        assert!(topics.iter().all(|t| validate_topic_name(t).is_ok()));
        topics
    }
}

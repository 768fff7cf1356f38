//! Topic names and topic filters: validation, shared-subscription names and
//! matching, as MQTT 3.1.1 §4.7 and MQTT 5 §4.7–4.8 define them.
//!
//! A topic name is what a message is published to; a topic filter is what a
//! session subscribes to, and may use the wildcards `+` (exactly one level)
//! and `#` (this level and every level below, as the last level only).
//! `$share/{group}/{filter}` subscribes to `filter` as a member of a shared
//! group. Topics starting with `$` are not matched by filters starting with
//! a wildcard.

use thiserror::Error;

/// The longest topic name or filter, in bytes (MQTT strings have a 16-bit length).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// The prefix of a shared subscription's filter.
const SHARE_PREFIX: &str = "$share/";

/// Why a topic name or topic filter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TopicError {
    /// The topic is empty (names and filters need at least one character).
    #[error("topic is empty")]
    Empty,
    /// The topic is longer than [`MAX_TOPIC_LEN`] bytes.
    #[error("topic is longer than 65535 bytes")]
    TooLong,
    /// The topic contains the NUL character (U+0000).
    #[error("topic contains a NUL character")]
    ContainsNul,
    /// A topic name contains `+` or `#`.
    #[error("topic name contains a wildcard")]
    WildcardInName,
    /// A filter has `+` or `#` that is not a whole level, or `#` that is not
    /// the last level.
    #[error("misplaced wildcard in topic filter")]
    MisplacedWildcard,
    /// A `$share/` filter with an empty share name, a share name containing
    /// `+` or `#`, or no filter after the share name.
    #[error("invalid shared subscription (expected $share/{{group}}/{{filter}})")]
    BadSharedSubscription,
}

/// Checks the rules names and filters share: not empty, not too long, no NUL.
fn validate_string(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        Err(TopicError::Empty)
    } else if topic.len() > MAX_TOPIC_LEN {
        Err(TopicError::TooLong)
    } else if topic.contains('\0') {
        Err(TopicError::ContainsNul)
    } else {
        Ok(())
    }
}

/// Checks a topic name, as published to: non-empty, at most 65,535 bytes,
/// no NUL, no wildcard.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    validate_string(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a plain topic filter: non-empty, at most 65,535 bytes, no NUL,
/// `+` only as a whole level, `#` only as the whole last level.
///
/// `$share/` has no special meaning here; use [`parse_filter`] for the
/// filters of a SUBSCRIBE packet.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    validate_string(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let misplaced = match level {
            "+" => false,
            "#" => levels.peek().is_some(),
            _ => level.contains(['+', '#']),
        };
        if misplaced {
            return Err(TopicError::MisplacedWildcard);
        }
    }
    Ok(())
}

/// A subscription's filter, split into its shared-subscription parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParsedFilter<'a> {
    /// An ordinary subscription to this filter.
    Plain(&'a str),
    /// `$share/{group}/{filter}`: membership of the shared group `group` on `filter`.
    Shared {
        /// The share name.
        group: &'a str,
        /// The topic filter the group subscribes to.
        filter: &'a str,
    },
}

impl<'a> ParsedFilter<'a> {
    /// The topic filter matched against topics (without any `$share/{group}/`).
    pub fn filter(&self) -> &'a str {
        match *self {
            ParsedFilter::Plain(filter) | ParsedFilter::Shared { filter, .. } => filter,
        }
    }

    /// The share name, for a shared subscription.
    pub fn group(&self) -> Option<&'a str> {
        match *self {
            ParsedFilter::Plain(_) => None,
            ParsedFilter::Shared { group, .. } => Some(group),
        }
    }
}

/// Parses and validates a filter as a SUBSCRIBE or UNSUBSCRIBE packet
/// carries it: `$share/{group}/{filter}` is a shared subscription (the share
/// name must be non-empty and free of `+` and `#`, and the filter valid),
/// anything else a plain filter checked by [`validate_filter`].
pub fn parse_filter(raw: &str) -> Result<ParsedFilter<'_>, TopicError> {
    let Some(share) = raw.strip_prefix(SHARE_PREFIX) else {
        validate_filter(raw)?;
        return Ok(ParsedFilter::Plain(raw));
    };
    validate_string(raw)?;
    let (group, filter) = share
        .split_once('/')
        .ok_or(TopicError::BadSharedSubscription)?;
    if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
        return Err(TopicError::BadSharedSubscription);
    }
    validate_filter(filter)?;
    Ok(ParsedFilter::Shared { group, filter })
}

/// Whether the plain topic `filter` matches the topic name `topic`.
///
/// `+` matches exactly one level, `#` the level it stands at (possibly
/// absent: `sport/#` matches `sport`) and every level below. A topic
/// starting with `$` is not matched by a filter starting with `+` or `#`.
/// Both arguments should be valid; for invalid ones the answer is
/// meaningless but this never panics.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(_)) => {}
            (Some(expected), Some(level)) if expected == level => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for valid in [
            "a",
            "/",
            "sport/tennis/player1",
            "Accounts payable",
            "$SYS/broker",
            "a//b",
        ] {
            assert_eq!(validate_topic_name(valid), Ok(()), "{valid:?}");
        }
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::ContainsNul));
        assert_eq!(
            validate_topic_name("sport/+"),
            Err(TopicError::WildcardInName)
        );
        assert_eq!(
            validate_topic_name("sport/#"),
            Err(TopicError::WildcardInName)
        );
        assert_eq!(
            validate_topic_name("sport+"),
            Err(TopicError::WildcardInName)
        );
    }

    #[test]
    fn length_limit_is_65535_bytes() {
        let longest = "a".repeat(MAX_TOPIC_LEN);
        let too_long = "a".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(validate_topic_name(&longest), Ok(()));
        assert_eq!(validate_topic_name(&too_long), Err(TopicError::TooLong));
        assert_eq!(validate_filter(&longest), Ok(()));
        assert_eq!(validate_filter(&too_long), Err(TopicError::TooLong));
        // Counted in bytes, not characters.
        let multibyte = "é".repeat(MAX_TOPIC_LEN / 2 + 1);
        assert_eq!(validate_topic_name(&multibyte), Err(TopicError::TooLong));
        let shared = format!("$share/g/{}", "a".repeat(MAX_TOPIC_LEN - 9));
        assert!(parse_filter(&shared).is_ok());
        assert_eq!(
            parse_filter(&format!("{shared}a")),
            Err(TopicError::TooLong)
        );
    }

    #[test]
    fn filters() {
        let valid = [
            "#",
            "+",
            "sport/tennis/#",
            "sport/tennis/player1/#",
            "+/tennis/#",
            "sport/+/player1",
            "+/+",
            "/+",
            "$SYS/#",
            "a//b",
        ];
        for filter in valid {
            assert_eq!(validate_filter(filter), Ok(()), "{filter:?}");
        }
        for filter in [
            "sport/tennis#",
            "sport/tennis/#/ranking",
            "sport+",
            "#/a",
            "a/+b",
            "##",
            "++",
        ] {
            assert_eq!(
                validate_filter(filter),
                Err(TopicError::MisplacedWildcard),
                "{filter:?}"
            );
        }
        assert_eq!(validate_filter(""), Err(TopicError::Empty));
        assert_eq!(validate_filter("a/\0"), Err(TopicError::ContainsNul));
    }

    #[test]
    fn shared_subscriptions() {
        assert_eq!(parse_filter("sport/#"), Ok(ParsedFilter::Plain("sport/#")));
        assert_eq!(parse_filter("$share"), Ok(ParsedFilter::Plain("$share")));
        assert_eq!(
            parse_filter("$shared/x"),
            Ok(ParsedFilter::Plain("$shared/x"))
        );
        let parsed = parse_filter("$share/consumers/sport/+");
        assert_eq!(
            parsed,
            Ok(ParsedFilter::Shared {
                group: "consumers",
                filter: "sport/+"
            })
        );
        assert_eq!(
            parsed.map(|p| (p.group(), p.filter())),
            Ok((Some("consumers"), "sport/+"))
        );
        assert_eq!(
            parse_filter("$share/g//"),
            Ok(ParsedFilter::Shared {
                group: "g",
                filter: "/"
            })
        );
        for bad in [
            "$share/",
            "$share//a",
            "$share/g",
            "$share/g/",
            "$share/g+/a",
            "$share/#/a",
            "$share/a+b/a",
        ] {
            assert_eq!(
                parse_filter(bad),
                Err(TopicError::BadSharedSubscription),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_filter("$share/g/a#"),
            Err(TopicError::MisplacedWildcard)
        );
        assert_eq!(parse_filter("$share/g/a\0"), Err(TopicError::ContainsNul));
        assert_eq!(parse_filter("$share/g\0/a"), Err(TopicError::ContainsNul));
        assert_eq!(parse_filter("sport+"), Err(TopicError::MisplacedWildcard));
        assert_eq!(parse_filter(""), Err(TopicError::Empty));
    }

    #[test]
    fn multi_level_wildcard() {
        for topic in [
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
        ] {
            assert!(matches("sport/tennis/player1/#", topic), "{topic:?}");
        }
        assert!(matches("sport/#", "sport"));
        assert!(matches("sport/#", "sport/"));
        assert!(!matches("sport/#", "sports"));
        assert!(!matches("sport/tennis/#", "sport"));
        assert!(matches("#", "sport/tennis"));
        assert!(matches("#", "/"));
    }

    #[test]
    fn single_level_wildcard() {
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(matches("sport/tennis/+", "sport/tennis/player2"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("+/tennis/#", "sport/tennis/x/y"));
        assert!(matches("+", "sport"));
    }

    #[test]
    fn exact_levels_are_case_sensitive() {
        assert!(matches("ACCOUNTS", "ACCOUNTS"));
        assert!(!matches("ACCOUNTS", "Accounts"));
        assert!(matches("Accounts payable/+", "Accounts payable/x"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(!matches("a/b", "a//b"));
    }

    #[test]
    fn dollar_topics_need_a_literal_first_level() {
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(!matches("+", "$SYS"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS"));
        // Only the first level counts.
        assert!(matches("a/+", "a/$b"));
        assert!(matches("a/#", "a/$b"));
    }
}

//! Configured ACL rules for plain MQTT topics, in the manner of Mosquitto's
//! ACL file.
//!
//! Each rule grants `read`, `write` or `readwrite` access to a topic filter,
//! for every authenticated user or for listed users. A level that is exactly
//! `%u` or `%c` is replaced by the user id or the client id when a rule is
//! checked, as Mosquitto's `pattern` lines do; if the value would not make a
//! single plain level the rule does not apply. Whatever no rule allows is
//! denied. Rules can never reach the chat namespace: that is governed by
//! [`crate::acl`] alone.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::ids::{IdError, UserId};
use crate::topics::{
    filter_can_reach_chat_namespace, filter_is_subset, is_shared_subscription,
    topic_matches_filter, validate_topic_filter, TopicError,
};

/// Level placeholder replaced by the user id.
const USER_PLACEHOLDER: &str = "%u";

/// Level placeholder replaced by the client id.
const CLIENT_PLACEHOLDER: &str = "%c";

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Subscribe (`"read"`).
    Read,
    /// Publish (`"write"`).
    Write,
    /// Both (`"readwrite"`).
    ReadWrite,
}

impl Access {
    /// Whether this access allows subscribing.
    pub fn allows_read(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    /// Whether this access allows publishing.
    pub fn allows_write(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// One `[[acl]]` entry of the configuration, as written.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AclRuleConfig {
    /// What the rule grants.
    pub access: Access,
    /// The topic filter it grants it on; levels `%u` and `%c` are substituted.
    pub filter: String,
    /// The users it applies to; empty means every authenticated user.
    #[serde(default)]
    pub users: Vec<String>,
}

/// Why a configured rule was rejected. `index` is the rule's position in
/// the `acl` list, from 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The filter is not a valid MQTT topic filter.
    #[error("acl[{index}]: filter {filter:?} is invalid: {source}")]
    InvalidFilter {
        /// Position of the rule.
        index: usize,
        /// The filter as written.
        filter: String,
        /// What is wrong with it.
        source: TopicError,
    },
    /// The filter's first level is a chat namespace letter or a wildcard.
    #[error(
        "acl[{index}]: filter {filter:?} reaches into the chat namespace; its first level \
         may not be a wildcard or one of u, s, r, t, p, q, a (chat topics are governed by \
         Parley's own rules)"
    )]
    ReachesChatNamespace {
        /// Position of the rule.
        index: usize,
        /// The filter as written.
        filter: String,
    },
    /// The filter starts with an MQTT 5 shared-subscription prefix, which
    /// is not part of any topic.
    #[error(
        "acl[{index}]: filter {filter:?} starts with $share; write the filter without the \
         shared-subscription prefix"
    )]
    SharedSubscription {
        /// Position of the rule.
        index: usize,
        /// The filter as written.
        filter: String,
    },
    /// `%u` or `%c` appears inside a level with other characters.
    #[error(
        "acl[{index}]: filter {filter:?}: %u and %c must each be a whole level (level {level})"
    )]
    PartialSubstitution {
        /// Position of the rule.
        index: usize,
        /// The filter as written.
        filter: String,
        /// Zero-based index of the offending level.
        level: usize,
    },
    /// An entry of `users` is not a valid user id.
    #[error("acl[{index}]: user {user:?} is not a valid user id: {source}")]
    InvalidUser {
        /// Position of the rule.
        index: usize,
        /// The entry as written.
        user: String,
        /// Why it is invalid.
        source: IdError,
    },
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    /// What the rule grants.
    access: Access,
    /// The filter as written, placeholders included.
    filter: String,
    /// Whether the filter has a `%u` or `%c` level.
    substitutes: bool,
    /// The users it applies to; empty means everyone.
    users: Vec<UserId>,
}

impl Rule {
    /// Validates one configured rule.
    fn compile(index: usize, config: AclRuleConfig) -> Result<Rule, RuleError> {
        let AclRuleConfig {
            access,
            filter,
            users,
        } = config;
        if let Err(source) = validate_topic_filter(&filter) {
            return Err(RuleError::InvalidFilter {
                index,
                filter,
                source,
            });
        }
        if filter_can_reach_chat_namespace(&filter) {
            return Err(RuleError::ReachesChatNamespace { index, filter });
        }
        if is_shared_subscription(&filter) {
            return Err(RuleError::SharedSubscription { index, filter });
        }
        let mut substitutes = false;
        for (level, text) in filter.split('/').enumerate() {
            if text == USER_PLACEHOLDER || text == CLIENT_PLACEHOLDER {
                substitutes = true;
            } else if text.contains(USER_PLACEHOLDER) || text.contains(CLIENT_PLACEHOLDER) {
                return Err(RuleError::PartialSubstitution {
                    index,
                    filter,
                    level,
                });
            }
        }
        let users = users
            .into_iter()
            .map(|user| match UserId::parse(&user) {
                Ok(id) => Ok(id),
                Err(source) => Err(RuleError::InvalidUser {
                    index,
                    user,
                    source,
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rule {
            access,
            filter,
            substitutes,
            users,
        })
    }

    /// Whether the rule names `user` (or names nobody, so applies to all).
    fn applies_to(&self, user: &UserId) -> bool {
        self.users.is_empty() || self.users.contains(user)
    }

    /// The rule's filter for this principal, or `None` if a substituted
    /// value cannot stand as a plain level there.
    fn filter_for<'a>(&'a self, user: &UserId, client_id: &str) -> Option<Cow<'a, str>> {
        if !self.substitutes {
            return Some(Cow::Borrowed(&self.filter));
        }
        let mut out = String::with_capacity(self.filter.len() + client_id.len());
        for (level, text) in self.filter.split('/').enumerate() {
            let value = match text {
                USER_PLACEHOLDER => user.as_str(),
                CLIENT_PLACEHOLDER => client_id,
                literal => literal,
            };
            let substituted = text == USER_PLACEHOLDER || text == CLIENT_PLACEHOLDER;
            if substituted && !substitution_fits(level, value) {
                return None;
            }
            if level > 0 {
                out.push('/');
            }
            out.push_str(value);
        }
        Some(Cow::Owned(out))
    }
}

/// Whether `value` can replace a placeholder at `level` without changing the
/// filter's shape or letting it reach the chat namespace or `$` topics.
fn substitution_fits(level: usize, value: &str) -> bool {
    if value.is_empty() || value.contains(['/', '+', '#', '\0']) {
        return false;
    }
    level > 0 || !(value.starts_with('$') || filter_can_reach_chat_namespace(value))
}

/// The compiled set of configured rules. The default has no rules and so
/// denies every plain topic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AclRules {
    /// Validated rules, in configuration order.
    rules: Vec<Rule>,
}

impl AclRules {
    /// Validates configured rules; the first invalid one is reported.
    pub fn compile(configs: Vec<AclRuleConfig>) -> Result<AclRules, RuleError> {
        let rules = configs
            .into_iter()
            .enumerate()
            .map(|(index, config)| Rule::compile(index, config))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AclRules { rules })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (everything plain is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a `write` or `readwrite` rule's filter matches `topic` for
    /// this user and client id.
    pub fn allows_publish(&self, user: &UserId, client_id: &str, topic: &str) -> bool {
        self.rules.iter().any(|rule| {
            rule.access.allows_write()
                && rule.applies_to(user)
                && rule
                    .filter_for(user, client_id)
                    .is_some_and(|filter| topic_matches_filter(topic, &filter))
        })
    }

    /// Whether a `read` or `readwrite` rule's filter covers every topic that
    /// `filter` can match, for this user and client id.
    pub fn allows_subscribe(&self, user: &UserId, client_id: &str, filter: &str) -> bool {
        self.rules.iter().any(|rule| {
            rule.access.allows_read()
                && rule.applies_to(user)
                && rule
                    .filter_for(user, client_id)
                    .is_some_and(|granted| filter_is_subset(filter, &granted))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::value::{Error as DeError, StrDeserializer};
    use serde::de::IntoDeserializer;

    fn user(s: &str) -> UserId {
        UserId::parse(s).expect("valid user id")
    }

    fn rule(access: Access, filter: &str) -> AclRuleConfig {
        AclRuleConfig {
            access,
            filter: filter.to_owned(),
            users: Vec::new(),
        }
    }

    fn compile(rules: Vec<AclRuleConfig>) -> AclRules {
        AclRules::compile(rules).expect("valid rules")
    }

    #[test]
    fn access_names_are_lowercase() {
        for (text, access) in [
            ("read", Access::Read),
            ("write", Access::Write),
            ("readwrite", Access::ReadWrite),
        ] {
            let de: StrDeserializer<DeError> = text.into_deserializer();
            assert_eq!(Access::deserialize(de), Ok(access));
        }
        let de: StrDeserializer<DeError> = "ReadWrite".into_deserializer();
        assert!(Access::deserialize(de).is_err());
    }

    #[test]
    fn default_denies_everything() {
        let rules = AclRules::default();
        assert!(rules.is_empty());
        assert!(!rules.allows_publish(&user("alice"), "c", "devices/alice/x"));
        assert!(!rules.allows_subscribe(&user("alice"), "c", "devices/alice/x"));
    }

    #[test]
    fn access_kinds_are_respected() {
        let rules = compile(vec![
            rule(Access::Read, "news/#"),
            rule(Access::Write, "ingest/#"),
            rule(Access::ReadWrite, "room/+"),
        ]);
        assert_eq!(rules.len(), 3);
        let a = user("alice");
        assert!(rules.allows_subscribe(&a, "c", "news/today"));
        assert!(!rules.allows_publish(&a, "c", "news/today"));
        assert!(rules.allows_publish(&a, "c", "ingest/x/y"));
        assert!(!rules.allows_subscribe(&a, "c", "ingest/x/y"));
        assert!(rules.allows_publish(&a, "c", "room/1"));
        assert!(rules.allows_subscribe(&a, "c", "room/+"));
        assert!(!rules.allows_subscribe(&a, "c", "room/#"));
        assert!(!rules.allows_publish(&a, "c", "room/1/x"));
        assert!(!rules.allows_publish(&a, "c", "elsewhere"));
    }

    #[test]
    fn subscribe_needs_a_superset() {
        let rules = compile(vec![rule(Access::Read, "devices/alice/#")]);
        let a = user("alice");
        assert!(rules.allows_subscribe(&a, "c", "devices/alice/#"));
        assert!(rules.allows_subscribe(&a, "c", "devices/alice/+/temp"));
        assert!(rules.allows_subscribe(&a, "c", "devices/alice"));
        assert!(!rules.allows_subscribe(&a, "c", "devices/+/temp"));
        assert!(!rules.allows_subscribe(&a, "c", "devices/#"));
        assert!(!rules.allows_subscribe(&a, "c", "devices/alice/#/x"));
    }

    #[test]
    fn user_placeholder_is_substituted() {
        let rules = compile(vec![rule(Access::ReadWrite, "devices/%u/#")]);
        let (a, b) = (user("alice"), user("bob"));
        assert!(rules.allows_publish(&a, "c", "devices/alice/temp"));
        assert!(!rules.allows_publish(&a, "c", "devices/bob/temp"));
        assert!(rules.allows_subscribe(&b, "c", "devices/bob/#"));
        assert!(!rules.allows_subscribe(&b, "c", "devices/+/#"));
        assert!(!rules.allows_publish(&a, "c", "devices/%u/temp"));
    }

    #[test]
    fn client_placeholder_is_substituted_and_checked() {
        let rules = compile(vec![rule(Access::Write, "clients/%c/status")]);
        let a = user("alice");
        assert!(rules.allows_publish(&a, "phone", "clients/phone/status"));
        assert!(!rules.allows_publish(&a, "phone", "clients/tablet/status"));
        // A value that is not a single plain level makes the rule not apply.
        for bad in ["x/y", "+", "#", "", "a\0"] {
            assert!(
                !rules.allows_publish(&a, bad, "clients/x/y/status"),
                "{bad:?}"
            );
            assert!(
                !rules.allows_publish(&a, bad, "clients/+/status"),
                "{bad:?}"
            );
        }
        assert!(!rules.allows_publish(&a, "+", "clients/anything/status"));
    }

    #[test]
    fn first_level_placeholders_cannot_reach_chat_or_dollar_topics() {
        let rules = compile(vec![
            rule(Access::ReadWrite, "%u/#"),
            rule(Access::ReadWrite, "%c/#"),
        ]);
        let u = user("u");
        assert!(!rules.allows_subscribe(&u, "x", "u/#"));
        assert!(!rules.allows_subscribe(&u, "x", "u/bob/i"));
        assert!(rules.allows_subscribe(&u, "x", "x/anything"));
        let a = user("alice");
        assert!(rules.allows_publish(&a, "c", "alice/notes"));
        assert!(!rules.allows_publish(&a, "p", "p/bob"));
        assert!(!rules.allows_subscribe(&a, "$SYS", "$SYS/#"));
        assert!(!rules.allows_publish(&a, "$SYS", "$SYS/x"));
    }

    #[test]
    fn users_list_limits_a_rule() {
        let rules = compile(vec![AclRuleConfig {
            access: Access::ReadWrite,
            filter: "ops/#".into(),
            users: vec!["root".into(), "admin".into()],
        }]);
        assert!(rules.allows_publish(&user("admin"), "c", "ops/restart"));
        assert!(rules.allows_subscribe(&user("root"), "c", "ops/#"));
        assert!(!rules.allows_publish(&user("alice"), "c", "ops/restart"));
    }

    #[test]
    fn dollar_topics_need_an_explicit_rule() {
        let rules = compile(vec![rule(Access::Read, "$SYS/broker/#")]);
        let a = user("alice");
        assert!(rules.allows_subscribe(&a, "c", "$SYS/broker/load"));
        assert!(!rules.allows_subscribe(&a, "c", "$SYS/#"));
    }

    #[test]
    fn rules_cannot_reach_the_chat_namespace() {
        for filter in [
            "u/#", "s/+", "p/alice", "a", "q/x/#", "#", "+", "+/x", "t/#", "r/x",
        ] {
            assert_eq!(
                AclRules::compile(vec![rule(Access::ReadWrite, filter)]),
                Err(RuleError::ReachesChatNamespace {
                    index: 0,
                    filter: filter.into()
                }),
                "{filter}"
            );
        }
    }

    #[test]
    fn compile_reports_bad_rules_with_their_position() {
        let ok = rule(Access::Read, "ok/#");
        assert_eq!(
            AclRules::compile(vec![ok.clone(), rule(Access::Read, "a/#/b")]),
            Err(RuleError::InvalidFilter {
                index: 1,
                filter: "a/#/b".into(),
                source: TopicError::HashNotLast { level: 1 }
            })
        );
        assert_eq!(
            AclRules::compile(vec![rule(Access::Read, "")]),
            Err(RuleError::InvalidFilter {
                index: 0,
                filter: String::new(),
                source: TopicError::Empty
            })
        );
        assert_eq!(
            AclRules::compile(vec![
                ok.clone(),
                ok.clone(),
                rule(Access::Read, "devices/x%u/#")
            ]),
            Err(RuleError::PartialSubstitution {
                index: 2,
                filter: "devices/x%u/#".into(),
                level: 1
            })
        );
        let bad_user = AclRuleConfig {
            users: vec!["Alice".into()],
            ..ok.clone()
        };
        assert_eq!(
            AclRules::compile(vec![bad_user]),
            Err(RuleError::InvalidUser {
                index: 0,
                user: "Alice".into(),
                source: IdError::Uppercase { ch: 'A', pos: 0 }
            })
        );
        assert_eq!(
            AclRules::compile(vec![rule(Access::Read, "$share/g/x")]),
            Err(RuleError::SharedSubscription {
                index: 0,
                filter: "$share/g/x".into()
            })
        );
        // A `%` not followed by u or c is an ordinary character.
        assert!(AclRules::compile(vec![rule(Access::Read, "load/%/x")]).is_ok());
    }

    #[test]
    fn rule_errors_read_well() {
        let err = AclRules::compile(vec![rule(Access::Read, "u/#")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "acl[0]: filter \"u/#\" reaches into the chat namespace; its first level may not be a \
             wildcard or one of u, s, r, t, p, q, a (chat topics are governed by Parley's own rules)"
        );
        let err = AclRules::compile(vec![rule(Access::Read, "a+/x")]);
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("acl[0]: filter \"a+/x\" is invalid: wildcard '+' must be alone in its level (level 0)".into())
        );
    }
}

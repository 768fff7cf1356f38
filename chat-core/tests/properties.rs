//! Property tests over chat-core's public API: id validation keeps topics
//! well-formed, the chat tree round-trips, subscribe decisions never expose
//! another user's inbox, and filter containment agrees with topic matching.

use chat_core::acl::{
    authorize_publish, authorize_subscribe, Principal, PublishDecision, SubscribeDecision,
};
use chat_core::ids::{ConversationId, UserId};
use chat_core::rules::{Access, AclRuleConfig, AclRules};
use chat_core::topics::{
    answer_topic, filter_is_subset, inbox_topic, is_chat_namespace, presence_topic,
    topic_matches_filter, typing_feed_topic, validate_topic_filter, validate_topic_name, ChatTopic,
};
use proptest::prelude::*;

/// Strings that are often, but not always, valid user ids.
fn user_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9_.-]{0,31}",
        "[a-zA-Z0-9_.~/+#$\\x00 -]{0,40}",
        any::<String>(),
    ]
}

/// Strings that are often, but not always, valid conversation ids.
fn conversation_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9_.-]{0,33}~[a-z0-9][a-z0-9_.-]{0,33}",
        "g[a-z2-7]{14,18}",
        "[a-zA-Z0-9_.~/+#\\x00 -]{0,70}",
        any::<String>(),
    ]
}

/// A small pool of valid user names, including ones equal to chat letters
/// and tree levels, so that filters built from them hit real topics.
const USERS: [&str; 6] = ["alice", "bob", "u", "i", "t", "p"];

/// One topic or filter level, biased towards the chat tree.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(USERS.to_vec()).prop_map(str::to_owned),
        2 => prop::sample::select(vec!["u", "i", "t", "p", "a", "q", "s", "+", "#", "", "$x", "%u", "%c", "devices"])
            .prop_map(str::to_owned),
        1 => "[a-z+#$%/]{0,3}",
        1 => any::<String>(),
    ]
}

/// Filters (valid or not) of one to five levels.
fn filter() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..=5).prop_map(|levels| levels.join("/"))
}

/// Placeholder level that tests replace with the principal's user id.
const ME: &str = "{me}";

/// Placeholder level that tests replace with the other user's id.
const OTHER: &str = "{other}";

/// Filter templates shaped like the chat tree (first level, user, last
/// level), mixed with arbitrary filters, so that allowed and near-miss
/// filters are common. Levels [`ME`] and [`OTHER`] stand for the two users.
fn chat_like_filter() -> impl Strategy<Value = String> {
    let first = prop::sample::select(vec![
        "u", "u", "u", "p", "a", "q", "s", "devices", "devices", "devices", "+", "#", "$x",
    ]);
    let second = prop_oneof![
        2 => Just(ME.to_owned()),
        2 => Just(OTHER.to_owned()),
        1 => prop::sample::select(USERS.to_vec()).prop_map(str::to_owned),
        1 => level(),
    ];
    let third = prop_oneof![
        3 => prop::sample::select(vec!["i", "t", "+", "#"]).prop_map(str::to_owned),
        1 => level(),
    ];
    let len = prop::sample::select(vec![1, 2, 2, 3, 3, 3, 4]);
    let structured = (first, second, third, len).prop_map(|(a, b, c, len)| {
        let levels = [a.to_owned(), b, c, "#".to_owned()];
        levels[..len].join("/")
    });
    prop_oneof![3 => structured, 1 => filter()]
}

/// Replaces the [`ME`] and [`OTHER`] levels of a template.
fn fill_template(template: &str, me: &UserId, other: &UserId) -> String {
    template
        .split('/')
        .map(|level| match level {
            ME => me.as_str(),
            OTHER => other.as_str(),
            literal => literal,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Rule filters: mostly plain, some placeholders, some that must not
/// compile (chat letters, leading wildcards).
fn rule_filter() -> impl Strategy<Value = String> {
    let first = prop::sample::select(vec!["devices", "devices", "$x", "%u", "%c", "u", "+", "#"]);
    let rest = prop::collection::vec(
        prop::sample::select(vec!["%u", "%u", "%c", "+", "#", "#", "alice", "bob", "i"]),
        0..=3,
    );
    let structured = (first, rest).prop_map(|(first, rest)| {
        std::iter::once(first)
            .chain(rest)
            .collect::<Vec<_>>()
            .join("/")
    });
    prop_oneof![3 => structured, 1 => filter()]
}

/// A valid filter over a small alphabet, so that pairs often overlap.
fn small_filter() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "$s", "", "+", "#"]),
        1..=4,
    )
    .prop_map(|levels| levels.join("/"))
    .prop_filter("valid filter", |f| validate_topic_filter(f).is_ok())
}

/// Configured rules that compile (rules that would not are dropped).
fn rules() -> impl Strategy<Value = AclRules> {
    let access = prop::sample::select(vec![Access::Read, Access::Write, Access::ReadWrite]);
    let users = prop::collection::vec(prop::sample::select(USERS.to_vec()), 0..=2);
    prop::collection::vec((access, rule_filter(), users), 0..=6).prop_map(|raw| {
        let configs = raw
            .into_iter()
            .map(|(access, filter, users)| AclRuleConfig {
                access,
                filter,
                users: users.into_iter().map(str::to_owned).collect(),
            })
            .filter(|rule| AclRules::compile(vec![rule.clone()]).is_ok())
            .collect();
        AclRules::compile(configs).expect("each rule compiled alone")
    })
}

/// Two different users from the pool: the principal and someone else.
fn two_users() -> impl Strategy<Value = (UserId, UserId)> {
    (0..USERS.len(), 1..USERS.len()).prop_map(|(a, offset)| {
        let b = (a + offset) % USERS.len();
        let id = |i: usize| UserId::parse(USERS[i]).expect("pool users are valid");
        (id(a), id(b))
    })
}

/// Client ids, including ones that would be dangerous substituted for `%c`.
fn client_id() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "phone", "u", "p", "+", "#", "$SYS", "x/y", "", "alice"
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,8}",
    ]
}

/// Builds a topic that `filter` matches (unless `$` rules interfere) by
/// filling its wildcards from `fill`.
fn instantiate(filter: &str, fill: &[String]) -> String {
    let mut fill = fill.iter().cycle();
    let mut next = || fill.next().cloned().unwrap_or_default();
    let mut levels = Vec::new();
    for level in filter.split('/') {
        match level {
            "+" => levels.push(next()),
            "#" => {
                let n = next().len() % 3;
                levels.extend((0..n).map(|_| next()));
            }
            literal => levels.push(literal.to_owned()),
        }
    }
    if levels.is_empty() {
        levels.push(next());
    }
    levels.join("/")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// (a) Every accepted user id gives chat topics that parse back to it,
    /// and its inbox has exactly three levels.
    #[test]
    fn user_topics_round_trip(s in user_like()) {
        if let Ok(user) = UserId::parse(&s) {
            let inbox = inbox_topic(&user);
            prop_assert_eq!(inbox.split('/').count(), 3);
            prop_assert_eq!(ChatTopic::parse(&inbox), Ok(Some(ChatTopic::Inbox(user.clone()))));
            prop_assert_eq!(
                ChatTopic::parse(&typing_feed_topic(&user)),
                Ok(Some(ChatTopic::TypingFeed(user.clone())))
            );
            prop_assert_eq!(
                ChatTopic::parse(&presence_topic(&user)),
                Ok(Some(ChatTopic::Presence(user.clone())))
            );
            prop_assert_eq!(
                ChatTopic::parse(&answer_topic(&user)),
                Ok(Some(ChatTopic::Answer(user)))
            );
        }
    }

    /// (b) Accepted user ids never hold a separator, wildcard, NUL, `~` or
    /// `$`, and never exceed 32 bytes.
    #[test]
    fn user_ids_are_safe_levels(s in user_like()) {
        if let Ok(user) = UserId::parse(&s) {
            let text = user.as_str();
            prop_assert!(!text.contains(['/', '+', '#', '\0', '~', '$']));
            prop_assert!(!text.is_empty() && text.len() <= 32);
            prop_assert_eq!(text, s.as_str());
        }
    }

    /// (b) Accepted conversation ids never hold a separator, wildcard or
    /// NUL, never exceed 65 bytes, and round-trip through the chat tree.
    #[test]
    fn conversation_ids_are_safe_levels(s in conversation_like()) {
        if let Ok(conv) = ConversationId::parse(&s) {
            let text = conv.as_str();
            prop_assert!(!text.contains(['/', '+', '#', '\0', '$']));
            prop_assert!(!text.is_empty() && text.len() <= 65);
            let send = format!("s/{conv}");
            prop_assert_eq!(ChatTopic::parse(&send), Ok(Some(ChatTopic::Send(conv))));
        }
    }

    /// (b) Direct ids from any two valid users are symmetric and parse back.
    #[test]
    fn direct_ids_are_canonical(a in "[a-z0-9][a-z0-9_.-]{0,31}", b in "[a-z0-9][a-z0-9_.-]{0,31}") {
        let (a, b) = (UserId::parse(&a).expect("valid"), UserId::parse(&b).expect("valid"));
        match ConversationId::direct(&a, &b) {
            Ok(id) => {
                prop_assert_eq!(ConversationId::direct(&b, &a), Ok(id.clone()));
                prop_assert_eq!(ConversationId::parse(id.as_str()), Ok(id.clone()));
                let (x, y) = id.direct_members().expect("direct");
                prop_assert!(x < y);
                prop_assert!((x == a && y == b) || (x == b && y == a));
            }
            Err(_) => prop_assert_eq!(a, b),
        }
    }

    /// (b) Group ids from any bytes are 17 safe characters and parse back.
    #[test]
    fn group_ids_are_canonical(bytes in any::<[u8; 10]>()) {
        let id = ConversationId::group_from_random(bytes);
        prop_assert_eq!(id.as_str().len(), 17);
        prop_assert_eq!(ConversationId::parse(id.as_str()), Ok(id.clone()));
        prop_assert!(id.direct_members().is_none());
    }

    /// (c) Whatever the rules, no filter a principal may subscribe to can
    /// match another user's inbox, typing feed or answers.
    #[test]
    fn subscribe_never_exposes_other_users(
        (me, other) in two_users(),
        client_id in client_id(),
        template in chat_like_filter(),
        rules in rules(),
    ) {
        let filter = fill_template(&template, &me, &other);
        let principal = Principal { user: me, client_id };
        let decision = authorize_subscribe(&principal, &filter, &rules);
        if matches!(decision, SubscribeDecision::Allow | SubscribeDecision::AllowIfSharesConversation(_)) {
            for topic in [inbox_topic(&other), typing_feed_topic(&other), answer_topic(&other)] {
                prop_assert!(
                    !topic_matches_filter(&topic, &filter),
                    "{:?} allowed {:?}, which matches {}", principal, filter, topic
                );
            }
        }
        if let SubscribeDecision::AllowIfSharesConversation(user) = &decision {
            prop_assert_eq!(filter, presence_topic(user));
        }
    }

    /// Whatever the rules, plain publishes stay outside the chat namespace
    /// and chat publishes only reach conversations or the own request topic.
    #[test]
    fn publish_never_reaches_server_topics(
        (me, other) in two_users(),
        client_id in client_id(),
        template in chat_like_filter(),
        rules in rules(),
    ) {
        let topic = fill_template(&template, &me, &other);
        let principal = Principal { user: me.clone(), client_id };
        match authorize_publish(&principal, &topic, &rules) {
            PublishDecision::Plain => {
                prop_assert!(!is_chat_namespace(&topic));
                prop_assert!(validate_topic_name(&topic).is_ok());
            }
            PublishDecision::Chat(chat) => {
                prop_assert_eq!(chat.topic(), topic);
                let allowed = match &chat {
                    ChatTopic::Send(_) | ChatTopic::Receipt(_) | ChatTopic::Typing(_) => true,
                    ChatTopic::Request(user) => *user == me,
                    _ => false,
                };
                prop_assert!(allowed, "{:?}", chat);
            }
            PublishDecision::Deny(_) => {}
        }
    }

    /// (d) If `f` is a subset of `g`, every topic matched by `f` is matched
    /// by `g`.
    #[test]
    fn subset_agrees_with_matching(
        f in small_filter(),
        g in small_filter(),
        fill in prop::collection::vec(prop::sample::select(vec!["a", "b", "$s", "", "z"]).prop_map(str::to_owned), 1..6),
    ) {
        let topic = instantiate(&f, &fill);
        if filter_is_subset(&f, &g) && topic_matches_filter(&topic, &f) {
            prop_assert!(topic_matches_filter(&topic, &g), "{} in {} within {}", topic, f, g);
        }
        // A filter contains itself, and a topic with no wildcard is its own filter.
        prop_assert!(filter_is_subset(&f, &f));
        if validate_topic_name(&topic).is_ok() {
            prop_assert!(topic_matches_filter(&topic, &topic));
        }
    }

    /// (d) on arbitrary filters: containment never claims more than matching
    /// shows.
    #[test]
    fn subset_agrees_with_matching_on_any_filters(f in filter(), g in filter(), fill in prop::collection::vec(level(), 1..6)) {
        let topic = instantiate(&f, &fill);
        if filter_is_subset(&f, &g) && topic_matches_filter(&topic, &f) {
            prop_assert!(topic_matches_filter(&topic, &g), "{:?} in {:?} within {:?}", topic, f, g);
        }
    }
}

//! The plain subscribers of one filter, by session. Most filters have a
//! single subscriber (a device's own topic, a user's inbox), so one is kept
//! inline and a map is allocated only from the second on: an idle
//! subscription costs its tree node, not a map node sized for eleven.

use std::collections::BTreeMap;

use crate::message::{SessionId, SubscriptionOptions};

/// Sessions subscribed to one filter, with their options.
#[derive(Debug, Default)]
pub(crate) enum DirectSubscribers {
    /// Nobody.
    #[default]
    Empty,
    /// Exactly one session.
    One(SessionId, SubscriptionOptions),
    /// Two or more sessions, in session order.
    Many(BTreeMap<SessionId, SubscriptionOptions>),
}

impl DirectSubscribers {
    /// Whether no session is subscribed.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            DirectSubscribers::Empty => true,
            DirectSubscribers::One(..) => false,
            DirectSubscribers::Many(map) => map.is_empty(),
        }
    }

    /// Subscribes `session` with `options`; the options it replaced, if any.
    pub(crate) fn insert(
        &mut self,
        session: SessionId,
        options: SubscriptionOptions,
    ) -> Option<SubscriptionOptions> {
        match self {
            DirectSubscribers::Empty => {
                *self = DirectSubscribers::One(session, options);
                None
            }
            DirectSubscribers::One(id, old) if *id == session => {
                Some(std::mem::replace(old, options))
            }
            DirectSubscribers::One(id, old) => {
                let map = BTreeMap::from([(*id, *old), (session, options)]);
                *self = DirectSubscribers::Many(map);
                None
            }
            DirectSubscribers::Many(map) => map.insert(session, options),
        }
    }

    /// Unsubscribes `session`; its options, if it was subscribed.
    pub(crate) fn remove(&mut self, session: SessionId) -> Option<SubscriptionOptions> {
        match self {
            DirectSubscribers::One(id, options) if *id == session => {
                let options = *options;
                *self = DirectSubscribers::Empty;
                Some(options)
            }
            DirectSubscribers::Many(map) => {
                let removed = map.remove(&session);
                if map.len() == 1 {
                    if let Some((&id, &options)) = map.iter().next() {
                        *self = DirectSubscribers::One(id, options);
                    }
                }
                removed
            }
            _ => None,
        }
    }

    /// Every subscribed session with its options, in session order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SessionId, SubscriptionOptions)> + '_ {
        let (one, many) = match self {
            DirectSubscribers::Empty => (None, None),
            DirectSubscribers::One(id, options) => (Some((*id, *options)), None),
            DirectSubscribers::Many(map) => (None, Some(map.iter().map(|(&id, &o)| (id, o)))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::QoS;

    fn options(id: u32) -> SubscriptionOptions {
        SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            subscription_id: Some(id),
            ..SubscriptionOptions::default()
        }
    }

    #[test]
    fn grows_from_one_to_many_and_back() {
        let mut subs = DirectSubscribers::default();
        assert!(subs.is_empty());
        assert_eq!(subs.insert(7, options(1)), None);
        assert!(matches!(subs, DirectSubscribers::One(7, _)));
        assert_eq!(subs.insert(7, options(2)), Some(options(1)));
        assert_eq!(subs.insert(3, options(3)), None);
        assert_eq!(
            subs.iter().collect::<Vec<_>>(),
            vec![(3, options(3)), (7, options(2))]
        );
        assert_eq!(subs.remove(9), None);
        assert_eq!(subs.remove(3), Some(options(3)));
        assert!(matches!(subs, DirectSubscribers::One(7, _)));
        assert_eq!(subs.remove(7), Some(options(2)));
        assert!(subs.is_empty());
        assert_eq!(subs.iter().count(), 0);
        assert_eq!(subs.remove(7), None);
    }
}

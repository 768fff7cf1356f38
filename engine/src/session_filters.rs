//! The filters one session subscribed to, with their options: the session's
//! side of the subscription tree, used to enforce the per-session quota and
//! to unsubscribe everything when the session ends. A sorted vector sized
//! exactly to its entries, since most sessions hold a handful of filters.

use crate::message::SubscriptionOptions;

/// One session's filters, in filter order.
#[derive(Debug, Default)]
pub(crate) struct SessionFilters {
    entries: Vec<(Box<str>, SubscriptionOptions)>,
}

impl SessionFilters {
    fn find(&self, filter: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(f, _)| (**f).cmp(filter))
    }

    /// How many filters the session holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the session holds `filter`.
    pub(crate) fn contains(&self, filter: &str) -> bool {
        self.find(filter).is_ok()
    }

    /// Records `filter` with `options`, replacing its earlier options.
    pub(crate) fn insert(&mut self, filter: &str, options: SubscriptionOptions) {
        match self.find(filter) {
            Ok(at) => self.entries[at].1 = options,
            Err(at) => {
                self.entries.reserve_exact(1);
                self.entries.insert(at, (filter.into(), options));
            }
        }
    }

    /// Forgets `filter`; whether the session held it.
    pub(crate) fn remove(&mut self, filter: &str) -> bool {
        let Ok(at) = self.find(filter) else {
            return false;
        };
        self.entries.remove(at);
        if self.entries.capacity() > 2 * self.entries.len() + 4 {
            self.entries.shrink_to_fit();
        }
        true
    }

    /// Every filter with its options, in filter order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &SubscriptionOptions)> {
        self.entries.iter().map(|(f, o)| (&**f, o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::QoS;

    #[test]
    fn inserts_replaces_and_removes_in_filter_order() {
        let mut filters = SessionFilters::default();
        let qos = |qos| SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        };
        filters.insert("b/#", qos(QoS::AtMostOnce));
        filters.insert("a/+", qos(QoS::AtLeastOnce));
        filters.insert("b/#", qos(QoS::ExactlyOnce));
        assert_eq!(filters.len(), 2);
        assert!(filters.contains("a/+") && filters.contains("b/#") && !filters.contains("c"));
        let listed: Vec<_> = filters.iter().map(|(f, o)| (f.to_owned(), o.qos)).collect();
        assert_eq!(
            listed,
            vec![
                ("a/+".into(), QoS::AtLeastOnce),
                ("b/#".into(), QoS::ExactlyOnce)
            ]
        );
        assert!(filters.remove("a/+"));
        assert!(!filters.remove("a/+"));
        assert_eq!(filters.len(), 1);
    }
}

//! The relations part of the [`MetadataStore`] conformance suite: a user's
//! decisions about others (blocked, accepted), listed per user in order,
//! replaced and taken back.
//!
//! These checks run with the rest of the metadata suite through
//! [`metadata_conformance_tests!`](crate::metadata_conformance_tests); each takes
//! the store under test and panics with a message naming the broken promise.

use std::sync::Arc;

use super::unique_username;
use crate::{MetadataStore, Relation, RelationRecord, StoreError};

fn record(user: &str, other: &str, relation: Relation, at_ms: i64) -> RelationRecord {
    RelationRecord {
        user: user.to_owned(),
        other: other.to_owned(),
        relation,
        at_ms,
    }
}

async fn relations_of(store: &Arc<dyn MetadataStore>, user: &str) -> Vec<RelationRecord> {
    store
        .relations_of(user)
        .await
        .expect("relations_of must succeed")
}

/// Stored decisions come back with every field, by other user then relation,
/// and only for the user who made them.
pub async fn relations_round_trip_in_order(store: Arc<dyn MetadataStore>) {
    let user = unique_username("rel");
    let (zed, amy) = (unique_username("zed"), unique_username("amy"));
    let wanted = vec![
        record(&user, "", Relation::GroupConsentRequired, 0),
        record(&user, &amy, Relation::Accepted, 5),
        record(&user, &amy, Relation::Blocked, i64::MAX),
        record(&user, &zed, Relation::Blocked, -1),
    ];
    for r in wanted.iter().rev() {
        store
            .put_relation(r.clone())
            .await
            .expect("put_relation must succeed");
    }
    let mut expected = wanted.clone();
    expected.sort_by(|a, b| (&a.other, a.relation).cmp(&(&b.other, b.relation)));
    assert_eq!(
        relations_of(&store, &user).await,
        expected,
        "relations must round-trip every field, by other user then relation"
    );
    assert!(
        relations_of(&store, &amy).await.is_empty(),
        "a decision belongs to the user who made it"
    );
    assert!(relations_of(&store, &unique_username("nobody"))
        .await
        .is_empty());
}

/// Making the same decision again replaces its time; one decision is taken
/// back alone; taking back one that does not exist is `NotFound`.
pub async fn relation_put_replaces_and_delete_removes_one(store: Arc<dyn MetadataStore>) {
    let user = unique_username("rel");
    let other = unique_username("other");
    store
        .put_relation(record(&user, &other, Relation::Blocked, 1))
        .await
        .unwrap();
    store
        .put_relation(record(&user, &other, Relation::Blocked, 2))
        .await
        .unwrap();
    store
        .put_relation(record(&user, &other, Relation::Accepted, 3))
        .await
        .unwrap();
    assert_eq!(
        relations_of(&store, &user).await,
        vec![
            record(&user, &other, Relation::Accepted, 3),
            record(&user, &other, Relation::Blocked, 2),
        ],
        "a repeated decision replaces the earlier one"
    );
    store
        .delete_relation(&user, &other, Relation::Blocked)
        .await
        .expect("delete_relation must succeed");
    assert_eq!(
        relations_of(&store, &user).await,
        vec![record(&user, &other, Relation::Accepted, 3)],
        "only the decision taken back is gone"
    );
    assert!(
        matches!(
            store
                .delete_relation(&user, &other, Relation::Blocked)
                .await,
            Err(StoreError::NotFound(_))
        ),
        "taking back a decision that does not exist must be NotFound"
    );
}

//! Every query the Firestore backend issues, in one place, with the shape
//! that decides which index serves it. `firestore.indexes.json` must declare
//! a composite index for each shape that needs one, and nothing else.

/// The collection names, with the configured prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collections {
    /// KeyPackage records.
    pub keypackages: String,
    /// Owner indexes.
    pub owners: String,
    /// Audit records.
    pub audit: String,
    /// Used NIP-98 auth events.
    pub auth: String,
}

impl Collections {
    /// The collections under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            keypackages: format!("{prefix}keypackages"),
            owners: format!("{prefix}keypackage_owners"),
            audit: format!("{prefix}keypackage_audit"),
            auth: format!("{prefix}keypackage_auth"),
        }
    }
}

/// How a query constrains one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    /// `==` or `in`.
    Equality,
    /// `array-contains` or `array-contains-any`.
    ArrayContains,
    /// `<`, `<=`, `>`, `>=`.
    Range,
}

/// Sort direction of an `order_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Ascending.
    Ascending,
    /// Descending.
    Descending,
}

/// The shape of one query: what decides whether it needs a composite index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryShape {
    /// Collection id without the prefix.
    pub collection: &'static str,
    /// Field constraints, in the order the query states them.
    pub filters: Vec<(&'static str, Constraint)>,
    /// `order_by` clauses.
    pub order_by: Vec<(&'static str, Direction)>,
}

/// Every query the backend issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreQuery {
    /// Records holding any of some event ids (`ids` filters, consume, deletions).
    RecordsByEventIds,
    /// Records in some 30443 slots (`#d` filters).
    RecordsBySlots,
    /// The newest available records (filters without authors, ids, `#i`, `#d`).
    RecentAvailable,
    /// Records cleanup may delete.
    PurgeableRecords,
    /// Owner indexes with something expired.
    OwnersToPrune,
    /// Audit records past retention.
    ExpiredAudit,
    /// Audit records of one owner.
    AuditOfOwner,
    /// Every record of one owner (owner routes).
    RecordsOfOwner,
    /// Used auth events past their window.
    ExpiredAuth,
}

impl StoreQuery {
    /// All of them.
    pub const ALL: [StoreQuery; 9] = [
        Self::RecordsByEventIds,
        Self::RecordsBySlots,
        Self::RecentAvailable,
        Self::PurgeableRecords,
        Self::OwnersToPrune,
        Self::ExpiredAudit,
        Self::AuditOfOwner,
        Self::RecordsOfOwner,
        Self::ExpiredAuth,
    ];

    /// The query's shape.
    pub fn shape(self) -> QueryShape {
        use Constraint::*;
        let (collection, filters, order_by) = match self {
            Self::RecordsByEventIds => ("keypackages", vec![("event_ids", ArrayContains)], vec![]),
            Self::RecordsBySlots => ("keypackages", vec![("slot", Equality)], vec![]),
            Self::RecentAvailable => (
                "keypackages",
                vec![("state", Equality), ("created_at", Range)],
                vec![("created_at", Direction::Descending)],
            ),
            Self::PurgeableRecords => ("keypackages", vec![("purge_at", Range)], vec![]),
            Self::OwnersToPrune => ("keypackage_owners", vec![("next_purge_at", Range)], vec![]),
            Self::ExpiredAudit => ("keypackage_audit", vec![("expire_at", Range)], vec![]),
            Self::AuditOfOwner => ("keypackage_audit", vec![("owner", Equality)], vec![]),
            Self::RecordsOfOwner => ("keypackages", vec![("owner", Equality)], vec![]),
            Self::ExpiredAuth => ("keypackage_auth", vec![("expire_at", Range)], vec![]),
        };
        QueryShape {
            collection,
            filters,
            order_by,
        }
    }
}

impl QueryShape {
    /// The composite index this query needs, as `(field, direction)` pairs,
    /// or `None` when Firestore serves it from single-field indexes: a
    /// query needs one when it constrains or orders more than one field,
    /// unless every constraint is an equality (index merging).
    pub fn composite_index(&self) -> Option<Vec<(&'static str, Direction)>> {
        let mut fields: Vec<&'static str> = Vec::new();
        for (field, _) in &self.filters {
            if !fields.contains(field) {
                fields.push(field);
            }
        }
        for (field, _) in &self.order_by {
            if !fields.contains(field) {
                fields.push(field);
            }
        }
        let only_equalities = self.order_by.is_empty() && self.filters.iter().all(|(_, c)| *c == Constraint::Equality);
        if fields.len() < 2 || only_equalities {
            return None;
        }
        // Equality fields first, then the range / order field, in the
        // direction it is ordered by.
        let mut index: Vec<(&'static str, Direction)> = self
            .filters
            .iter()
            .filter(|(_, c)| *c != Constraint::Range)
            .map(|(f, _)| (*f, Direction::Ascending))
            .collect();
        for (field, constraint) in &self.filters {
            if *constraint == Constraint::Range && !index.iter().any(|(f, _)| f == field) {
                let direction = self
                    .order_by
                    .iter()
                    .find(|(f, _)| f == field)
                    .map(|(_, d)| *d)
                    .unwrap_or(Direction::Ascending);
                index.push((field, direction));
            }
        }
        for (field, direction) in &self.order_by {
            if !index.iter().any(|(f, _)| f == field) {
                index.push((field, *direction));
            }
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The composite indexes `firestore.indexes.json` declares.
    fn declared() -> Vec<(String, Vec<(String, Direction)>)> {
        let json: Value = serde_json::from_str(include_str!("../../../firestore.indexes.json")).unwrap();
        json["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|index| {
                let fields = index["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| {
                        let direction = match f["order"].as_str() {
                            Some("DESCENDING") => Direction::Descending,
                            _ => Direction::Ascending,
                        };
                        (f["fieldPath"].as_str().unwrap().to_owned(), direction)
                    })
                    .collect();
                (index["collectionGroup"].as_str().unwrap().to_owned(), fields)
            })
            .collect()
    }

    #[test]
    fn every_query_needing_a_composite_index_has_one_and_none_is_unused() {
        let declared = declared();
        let mut used = vec![false; declared.len()];
        for query in StoreQuery::ALL {
            let shape = query.shape();
            let Some(needed) = shape.composite_index() else {
                continue;
            };
            let needed: Vec<(String, Direction)> = needed.into_iter().map(|(f, d)| (f.to_owned(), d)).collect();
            let position = declared
                .iter()
                .position(|(collection, fields)| collection == shape.collection && *fields == needed);
            let position = position.unwrap_or_else(|| {
                panic!(
                    "{query:?} needs a composite index on {} {needed:?}, not declared in firestore.indexes.json",
                    shape.collection
                )
            });
            used[position] = true;
        }
        for ((collection, fields), used) in declared.iter().zip(used) {
            assert!(
                used,
                "firestore.indexes.json declares an index no query uses: {collection} {fields:?}"
            );
        }
    }

    /// A field override: (collection, field, single-field indexes as
    /// (order or array config, query scope), ttl).
    type Override = (String, String, Vec<(String, String)>, bool);

    /// The field overrides `firestore.indexes.json` declares.
    fn overrides() -> Vec<Override> {
        let json: Value = serde_json::from_str(include_str!("../../../firestore.indexes.json")).unwrap();
        json["fieldOverrides"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let indexes = o["indexes"]
                    .as_array()
                    .expect("the Firebase CLI needs `indexes` on each field override")
                    .iter()
                    .map(|i| {
                        let kind = i["order"].as_str().or(i["arrayConfig"].as_str()).unwrap();
                        let scope = i["queryScope"].as_str().unwrap_or("COLLECTION");
                        (kind.to_owned(), scope.to_owned())
                    })
                    .collect();
                (
                    o["collectionGroup"].as_str().unwrap().to_owned(),
                    o["fieldPath"].as_str().unwrap().to_owned(),
                    indexes,
                    o["ttl"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    }

    #[test]
    fn the_audit_collection_has_a_ttl_policy_on_the_field_the_backend_writes() {
        let ttl: Vec<(String, String)> = overrides()
            .into_iter()
            .filter(|(_, _, _, ttl)| *ttl)
            .map(|(c, f, _, _)| (c, f))
            .collect();
        assert_eq!(
            ttl,
            vec![("keypackage_audit".to_owned(), crate::client::AUDIT_TTL_FIELD.to_owned())],
            "one TTL policy: the audit records' Timestamp field"
        );
        // Cleanup purges by the same field (TTL deletion may lag by a day).
        assert_eq!(
            StoreQuery::ExpiredAudit.shape().filters,
            vec![(crate::client::AUDIT_TTL_FIELD, Constraint::Range)]
        );
    }

    #[test]
    fn overridden_fields_keep_the_single_field_index_each_query_needs() {
        let overrides = overrides();
        for query in StoreQuery::ALL {
            let shape = query.shape();
            if shape.composite_index().is_some() {
                continue;
            }
            let used = shape
                .filters
                .iter()
                .map(|(f, c)| {
                    let kind = match c {
                        Constraint::ArrayContains => "CONTAINS",
                        _ => "ASCENDING",
                    };
                    (*f, kind)
                })
                .chain(shape.order_by.iter().map(|(f, d)| {
                    let kind = match d {
                        Direction::Ascending => "ASCENDING",
                        Direction::Descending => "DESCENDING",
                    };
                    (*f, kind)
                }));
            for (field, kind) in used {
                let Some((_, _, indexes, _)) = overrides
                    .iter()
                    .find(|(c, f, _, _)| c == shape.collection && f == field)
                else {
                    continue; // Firestore's automatic single-field indexes.
                };
                assert!(
                    indexes.contains(&(kind.to_owned(), "COLLECTION".to_owned())),
                    "{query:?} needs a {kind} index on {}.{field}, which its field override drops",
                    shape.collection
                );
            }
        }
    }

    #[test]
    fn the_large_and_map_fields_are_exempt_from_indexing() {
        let json: Value = serde_json::from_str(include_str!("../../../firestore.indexes.json")).unwrap();
        let exempt: Vec<(String, String)> = json["fieldOverrides"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["indexes"].as_array().is_some_and(|i| i.is_empty()))
            .map(|o| {
                (
                    o["collectionGroup"].as_str().unwrap().into(),
                    o["fieldPath"].as_str().unwrap().into(),
                )
            })
            .collect();
        for needed in [("keypackages", "events"), ("keypackage_owners", "available")] {
            assert!(
                exempt.contains(&(needed.0.into(), needed.1.into())),
                "{needed:?} must be exempt from indexing"
            );
        }
        // No query filters on an exempt field.
        for query in StoreQuery::ALL {
            let shape = query.shape();
            let fields = shape
                .filters
                .iter()
                .map(|(f, _)| *f)
                .chain(shape.order_by.iter().map(|(f, _)| *f));
            for field in fields {
                assert!(
                    !exempt.contains(&(shape.collection.into(), field.into())),
                    "{query:?} uses exempt {field}"
                );
            }
        }
    }
}

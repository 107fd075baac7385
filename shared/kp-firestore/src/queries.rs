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
}

impl Collections {
    /// The collections under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            keypackages: format!("{prefix}keypackages"),
            owners: format!("{prefix}keypackage_owners"),
            audit: format!("{prefix}keypackage_audit"),
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
}

impl StoreQuery {
    /// All of them.
    pub const ALL: [StoreQuery; 7] = [
        Self::RecordsByEventIds,
        Self::RecordsBySlots,
        Self::RecentAvailable,
        Self::PurgeableRecords,
        Self::OwnersToPrune,
        Self::ExpiredAudit,
        Self::AuditOfOwner,
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
        };
        QueryShape {
            collection,
            filters,
            order_by,
        }
    }
}

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::audit_log;

/// One entry of the audit log, as stored (`before_fields`/`after_fields` are JSON objects).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = audit_log, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct AuditRow {
    pub id: i64,
    pub at: NaiveDateTime,
    pub actor_id: Option<i64>,
    pub actor_email: Option<String>,
    pub via: String,
    pub ip: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<i64>,
    pub before_fields: Option<String>,
    pub after_fields: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = audit_log)]
pub struct NewAuditRow<'a> {
    pub at: NaiveDateTime,
    pub actor_id: Option<i64>,
    pub actor_email: Option<&'a str>,
    pub via: &'a str,
    pub ip: Option<String>,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: Option<i64>,
    pub before_fields: Option<String>,
    pub after_fields: Option<String>,
}

/// Which entries to read: every filter given must match; `before_id` is the cursor (entries
/// come newest first, so the next page holds smaller ids).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor_id: Option<i64>,
    pub target_type: Option<String>,
    pub target_id: Option<i64>,
    pub action: Option<String>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
    pub before_id: Option<i64>,
}

impl AuditRow {
    /// The only write: there is no update, and deletion is by age only ([`prune`](Self::prune)).
    pub fn insert(conn: &mut DbConnection, row: &NewAuditRow) -> QueryResult<()> {
        diesel::insert_into(audit_log::table)
            .values(row)
            .execute(conn)
            .map(drop)
    }

    /// Up to `limit` entries matching `filter`, newest first.
    pub fn page(conn: &mut DbConnection, filter: &AuditFilter, limit: i64) -> QueryResult<Vec<AuditRow>> {
        let mut query = audit_log::table
            .select(AuditRow::as_select())
            .order(audit_log::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(actor) = filter.actor_id {
            query = query.filter(audit_log::actor_id.eq(actor));
        }
        if let Some(kind) = &filter.target_type {
            query = query.filter(audit_log::target_type.eq(kind.clone()));
        }
        if let Some(id) = filter.target_id {
            query = query.filter(audit_log::target_id.eq(id));
        }
        if let Some(action) = &filter.action {
            query = query.filter(audit_log::action.eq(action.clone()));
        }
        if let Some(from) = filter.from {
            query = query.filter(audit_log::at.ge(from));
        }
        if let Some(to) = filter.to {
            query = query.filter(audit_log::at.lt(to));
        }
        if let Some(before) = filter.before_id {
            query = query.filter(audit_log::id.lt(before));
        }
        query.load(conn)
    }

    /// Deletes the entries older than `cutoff` (the retention job); returns how many.
    pub fn prune(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<usize> {
        diesel::delete(audit_log::table.filter(audit_log::at.lt(cutoff))).execute(conn)
    }
}

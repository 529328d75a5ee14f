//! The two migration folders describe one schema.

use diesel::RunQueryDsl;
use diesel::sql_types::Text;
use keygate::db::DbConnection;

use crate::helpers::{Backend, TestDb};

fn migration_names(backend: &str) -> Vec<String> {
    let dir = format!("{}/migrations/{backend}", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn both_backends_have_identically_named_migrations() {
    let postgres = migration_names("postgres");
    assert!(!postgres.is_empty());
    assert_eq!(postgres, migration_names("sqlite"));
    for name in &postgres {
        for backend in ["postgres", "sqlite"] {
            for file in ["up.sql", "down.sql"] {
                let path = format!(
                    "{}/migrations/{backend}/{name}/{file}",
                    env!("CARGO_MANIFEST_DIR")
                );
                assert!(std::path::Path::new(&path).is_file(), "{path} is missing");
            }
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    name: String,
}

fn columns(conn: &mut DbConnection, table: &str) -> Vec<String> {
    let rows: Vec<Column> = match conn {
        DbConnection::Postgresql(c) => diesel::sql_query(format!(
            "SELECT column_name::text AS name FROM information_schema.columns \
             WHERE table_name = '{table}' ORDER BY ordinal_position"
        ))
        .load(c),
        DbConnection::Sqlite(c) => diesel::sql_query(format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        ))
        .load(c),
    }
    .expect("list columns");
    rows.into_iter().map(|c| c.name).collect()
}

#[test]
fn both_backends_create_the_same_tables_and_columns() {
    let Some(pg) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let sqlite = TestDb::new(Backend::Sqlite).expect("sqlite needs no server");
    let (mut pg, mut sqlite) = (pg.connect(), sqlite.connect());
    for table in ["users", "api_keys", "api_key_usage"] {
        let expected = columns(&mut pg, table);
        assert!(expected.len() >= 4, "{table}: {expected:?}");
        assert_eq!(expected, columns(&mut sqlite, table), "{table}");
    }
    assert!(
        keygate::db::migrate(&mut pg).expect("migrate again").is_empty(),
        "migrations are applied once"
    );
}

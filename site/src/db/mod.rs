//! The site's state in a database: SQLite (one file, the default) or PostgreSQL (shared by two
//! instances for high availability), through sqlx's Any driver.
//!
//! Queries are written once, in SQL both backends run (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`, 64-bit integers and text only). The schema is not: identity columns are spelt
//! differently, so each backend has its own migration folder (`migrations/sqlite`,
//! `migrations/postgres`) holding the same versions of the same tables. sqlx records the applied
//! versions in `_sqlx_migrations` on both, so a site upgraded on one backend and moved to the
//! other runs the same steps.

pub mod alerts;
pub mod audit;
pub mod channels;
pub mod groups;
pub mod jobs;
pub mod ops;
pub mod plans;
pub mod policies;
pub mod targets;
pub mod users;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::AnyPool;

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend of `url` (`sqlite:PATH` or `postgres://...`); anything else is refused.
    pub fn of(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            bail!("--db {url:?}: give sqlite:PATH or postgres://USER@HOST:PORT/DB")
        }
    }
}

/// The database: a pool and which backend it is.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    pub url: String,
}

impl Db {
    /// A transaction that writes. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`, waiting out the busy timeout): a deferred transaction that reads and then
    /// writes fails with SQLITE_BUSY_SNAPSHOT, without waiting, when another connection wrote in
    /// between (WAL), which the busy timeout does not cover.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }
}

/// Milliseconds since the epoch, as stored.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Db {
    /// Connect (creating a SQLite file if missing, mode 0600) and apply pending migrations.
    pub async fn open(url: &str) -> Result<Db> {
        let backend = Backend::of(url)?;
        sqlx::any::install_default_drivers();
        let connect_url = match backend {
            Backend::Sqlite => {
                let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
                let path = path.split('?').next().unwrap_or(path);
                if path.is_empty() {
                    bail!("--db {url:?}: no file after sqlite:");
                }
                create_private(std::path::Path::new(path))?;
                // WAL: readers never wait for the writer; a busy timeout instead of SQLITE_BUSY.
                format!("sqlite://{path}?mode=rwc")
            }
            Backend::Postgres => url.to_string(),
        };
        let mut opts = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5));
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    Ok(())
                })
            });
        }
        let pool = opts
            .connect(&connect_url)
            .await
            .with_context(|| format!("connecting to {}", redact(url)))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        };
        migrator
            .run(&pool)
            .await
            .with_context(|| format!("migrating {}", redact(url)))?;
        Ok(Db {
            pool,
            backend,
            url: url.to_string(),
        })
    }

    /// The schema versions applied (for `serve`'s log and the tests).
    pub async fn schema_versions(&self) -> Result<Vec<i64>> {
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Create the SQLite file 0600 if it does not exist (sqlx would make it with the umask's mode).
fn create_private(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the database file {}", path.display()))?;
    Ok(())
}

/// A text column of a row.
pub(crate) fn text(row: &AnyRow, col: &str) -> Result<String> {
    use sqlx::Row;
    Ok(row.try_get::<String, _>(col)?)
}

/// An integer column of a row.
pub(crate) fn int(row: &AnyRow, col: &str) -> Result<i64> {
    use sqlx::Row;
    Ok(row.try_get::<i64, _>(col)?)
}

/// Whether an error is a unique-key violation (a duplicate name).
pub(crate) fn is_duplicate(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d.is_unique_violation(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_hidden() {
        assert_eq!(Backend::of("sqlite:/x").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("postgres://a@b/c").unwrap(), Backend::Postgres);
        assert!(Backend::of("mysql://x").is_err());
        assert_eq!(
            redact("postgres://u:secret@h:5/d"),
            "postgres://u:***@h:5/d"
        );
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
    }
}

//! The PostgreSQL control store's connections: an r2d2 manager that opens `postgres` clients
//! with the store's schema first on their `search_path`, a per-connection cache of prepared
//! statements, the rewrite of the store's `?N` placeholders to `$N`, and the conversions between
//! [`Value`]s and PostgreSQL's types. Every client runs on the blocking pool (the `postgres`
//! crate drives its own small runtime per call), never on the server's async threads.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::StoreError;
use super::sql::{Value, db_err};
use crate::error::{Error, Result};

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::Db(StoreError(Box::new(e)))
    }
}

/// The advisory lock every write transaction takes first, so writers run one at a time as they
/// do on SQLite (`BEGIN IMMEDIATE`): a rule checked inside a write ("an active admin always
/// remains") sees every other writer's commit, on every node.
pub const WRITE_LOCK: i64 = 0x7472_6578_7772_6974; // "trexwrit"

/// The channel the schema's triggers notify when users, keys, roles or settings change: every
/// node listens and forgets the keys it had cached ([`super::DataVersion`]).
pub const CHANGES_CHANNEL: &str = "trex_changes";

/// One PostgreSQL connection of the pool with its prepared statements.
pub struct PgConn {
    client: Option<postgres::Client>,
    stmts: HashMap<String, postgres::Statement>,
}

impl Drop for PgConn {
    /// A `postgres` client closes by blocking on its runtime, which must not happen on an
    /// async thread (where a pool may be dropped): it is closed on a thread of its own.
    fn drop(&mut self) {
        self.stmts.clear();
        if let Some(client) = self.client.take() {
            let _ = std::thread::Builder::new()
                .name("trex-pg-close".into())
                .spawn(move || drop(client));
        }
    }
}

/// A connection that listens on [`CHANGES_CHANNEL`] and counts the notifications.
pub struct Listener(Option<postgres::Client>);

impl Listener {
    /// Whether the connection is gone (then reconnect).
    pub fn is_closed(&self) -> bool {
        self.0.as_ref().is_none_or(|c| c.is_closed())
    }

    /// How many notifications arrived since the last call (without waiting).
    pub fn drain(&mut self) -> i64 {
        use postgres::fallible_iterator::FallibleIterator;
        let Some(client) = self.0.as_mut() else {
            return 0;
        };
        let mut n = 0;
        let failed = {
            let mut notes = client.notifications();
            let mut it = notes.timeout_iter(std::time::Duration::ZERO);
            loop {
                match it.next() {
                    Ok(Some(_)) => n += 1,
                    Ok(None) => break false,
                    Err(e) => {
                        tracing::warn!("store change listener: {e}");
                        break true;
                    }
                }
            }
        };
        if failed {
            // counted as a change: the next call reconnects, and commits may have been missed
            self.0 = None;
            n += 1;
        }
        n
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            let _ = std::thread::Builder::new()
                .name("trex-pg-close".into())
                .spawn(move || drop(c));
        }
    }
}

impl PgConn {
    /// The client (present until the connection is dropped).
    pub(super) fn client(&mut self) -> &mut postgres::Client {
        self.client.as_mut().expect("an open PostgreSQL connection")
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let st = self.client().prepare(&dollar_params(sql)).map_err(|e| {
            // the driver's error is kept (a duplicate is still recognised); the SQL is logged
            tracing::debug!("{e} in: {sql}");
            Error::from(e)
        })?;
        if self.stmts.len() > 512 {
            self.stmts.clear();
        }
        self.stmts.insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    pub(super) fn execute(&mut self, sql: &str, values: &[Value<'_>]) -> Result<usize> {
        let st = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
        Ok(self.client().execute(&st, &params)? as usize)
    }

    pub(super) fn query(&mut self, sql: &str, values: &[Value<'_>]) -> Result<Vec<postgres::Row>> {
        let st = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
        Ok(self.client().query(&st, &params)?)
    }

    /// Runs a batch (one round trip); transactions' BEGIN and COMMIT count as statements.
    pub(super) fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.client().batch_execute(sql)?)
    }
}

/// Rewrites SQLite's `?N` (and bare `?`) placeholders to PostgreSQL's `$N`, leaving quoted
/// strings and identifiers alone.
pub fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                out.push('$');
                if n.is_empty() {
                    out.push_str(&next.to_string());
                    next += 1;
                } else {
                    out.push_str(&n);
                }
            }
            None => out.push(c),
        }
    }
    out
}

/// Reads column `i` of a PostgreSQL row as a [`Value`].
pub(super) fn cell<T>(
    r: &postgres::Row,
    i: usize,
    read: impl FnOnce(Value<'_>) -> Result<T>,
) -> Result<T> {
    let ty = r
        .columns()
        .get(i)
        .ok_or_else(|| db_err(format!("no column {i}")))?
        .type_()
        .clone();
    let v = match ty {
        Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Int),
        Type::INT4 => r
            .try_get::<_, Option<i32>>(i)?
            .map(|n| Value::Int(n.into())),
        Type::INT2 => r
            .try_get::<_, Option<i16>>(i)?
            .map(|n| Value::Int(n.into())),
        Type::BOOL => r
            .try_get::<_, Option<bool>>(i)?
            .map(|b| Value::Int(b.into())),
        Type::FLOAT8 => r.try_get::<_, Option<f64>>(i)?.map(Value::Real),
        Type::FLOAT4 => r
            .try_get::<_, Option<f32>>(i)?
            .map(|f| Value::Real(f.into())),
        Type::BYTEA => r.try_get::<_, Option<&[u8]>>(i)?.map(Value::Blob),
        _ => r.try_get::<_, Option<&str>>(i)?.map(Value::Text),
    };
    read(v.unwrap_or(Value::Null))
}

type BoxError = Box<dyn StdError + Sync + Send>;

impl ToSql for Value<'_> {
    /// Binds a value as the type PostgreSQL inferred for its placeholder.
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                Type::FLOAT4 => (i as f32).to_sql(ty, out),
                _ => text(&i.to_string(), ty, out),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                Type::INT8 if f.fract() == 0.0 => (f as i64).to_sql(ty, out),
                _ => text(&f.to_string(), ty, out),
            },
            Value::Text(s) => text(s, ty, out),
            Value::Blob(b) => match *ty {
                Type::BYTEA => b.to_sql(ty, out),
                _ => text(std::str::from_utf8(b)?, ty, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Text bound to a placeholder of type `ty`: numbers are parsed, JSON written as it is.
fn text(s: &str, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
    match *ty {
        Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
        Type::INT4 => s.parse::<i32>()?.to_sql(ty, out),
        Type::FLOAT8 => s.parse::<f64>()?.to_sql(ty, out),
        Type::BYTEA => s.as_bytes().to_sql(ty, out),
        Type::JSONB => {
            out.extend_from_slice(&[1]);
            out.extend_from_slice(s.as_bytes());
            Ok(IsNull::No)
        }
        _ => {
            out.extend_from_slice(s.as_bytes());
            Ok(IsNull::No)
        }
    }
}

/// Opens the pool's connections: parsed URL, the store's schema.
#[derive(Debug, Clone)]
pub struct Manager {
    config: postgres::Config,
    schema: String,
    /// `sslrootcert` of the URL: the certificates the server's must chain to.
    root_cert: Option<std::path::PathBuf>,
}

impl Manager {
    /// A manager for `url` (`postgres://…`; `sslmode` as libpq spells it) and `schema`, which
    /// must be a plain identifier.
    pub fn new(url: &str, schema: &str) -> Result<Manager> {
        let (url, root_cert) = super::tls::split_root_cert(url)?;
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| Error::Config(format!("store.url: {e}")))?;
        if !is_identifier(schema) {
            return Err(Error::Config(format!(
                "store.schema: {schema:?} is not a plain identifier (letters, digits, _)"
            )));
        }
        if config.get_application_name().is_none() {
            // pg_stat_activity tells the store's connections apart (and which schema)
            config.application_name(&format!("trex {schema}"));
        }
        Ok(Manager {
            config,
            schema: schema.to_owned(),
            root_cert,
        })
    }

    /// The schema the store's tables are in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The database, host and schema, for people (never the password).
    pub fn describe(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_default();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgres://{host}:{port}/{} (schema {})",
            self.config.get_dbname().unwrap_or("postgres"),
            self.schema
        )
    }

    /// A connection listening for changes of who may do what ([`CHANGES_CHANNEL`]).
    pub fn listener(&self) -> Result<Listener> {
        let mut client = self.client()?;
        client.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))?;
        Ok(Listener(Some(client)))
    }

    /// A new client outside the pool (the invalidation listener).
    pub fn client(&self) -> Result<postgres::Client> {
        let mut client = super::tls::connect(&self.config, self.root_cert.as_deref())?;
        client.batch_execute(&format!("SET search_path TO \"{}\"", self.schema))?;
        Ok(client)
    }
}

/// True for a name that can be used unquoted-safe inside double quotes.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl r2d2::ManageConnection for Manager {
    type Connection = RefCell<PgConn>;
    type Error = Error;

    fn connect(&self) -> Result<Self::Connection> {
        Ok(RefCell::new(PgConn {
            client: Some(self.client()?),
            stmts: HashMap::new(),
        }))
    }

    fn is_valid(&self, conn: &mut Self::Connection) -> Result<()> {
        Ok(conn.get_mut().client().batch_execute("")?)
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.get_mut().client.as_ref().is_none_or(|c| c.is_closed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_quotes() {
        assert_eq!(
            dollar_params("SELECT a FROM t WHERE a = ?1 AND b = '?2' AND \"c?\" = ?12"),
            "SELECT a FROM t WHERE a = $1 AND b = '?2' AND \"c?\" = $12"
        );
        assert_eq!(dollar_params("VALUES (?, ?)"), "VALUES ($1, $2)");
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(is_identifier("trex"));
        assert!(is_identifier("trex_2"));
        assert!(!is_identifier("Trex"));
        assert!(!is_identifier("a\"b"));
        assert!(!is_identifier(""));
    }
}

//! The one SQL surface every store function speaks, whichever engine holds the control store:
//! [`Conn`] runs a statement written once with `?N` placeholders on SQLite (rusqlite) or on
//! PostgreSQL (the `postgres` client, `?N` rewritten to `$N`), binds [`Param`]s and reads
//! [`Row`] cells into Rust values. Values cross the boundary as the five SQLite storage classes
//! ([`Value`]), so a column declared `INTEGER` on SQLite and `BIGINT` on PostgreSQL reads the
//! same, booleans are integers 0/1 on both, and times are RFC 3339 text on both.
//!
//! What the two engines spell differently is kept out of the queries: PostgreSQL's schema
//! (`schema.pg.sql`) defines `instr`, `json_each` and `json_extract` with SQLite's meaning, and
//! a case-insensitive collation `nocase`, so one query text serves both.

use std::cell::RefCell;

use crate::error::{Error, Result};

use super::StoreError;
use super::pg::PgConn;

/// Statements (and batches) the control store has run in this process, on either engine: on
/// PostgreSQL each is a network round trip (`trex_store_statements_total` in `/metrics`).
pub static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn counted() {
    STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// A connection of the control store, as every store function takes it: inside
/// [`Store::write`](super::Store::write) it is the open transaction.
pub struct Conn<'a>(pub(super) Db<'a>);

/// The engine under a [`Conn`].
pub(super) enum Db<'a> {
    Lite(&'a rusqlite::Connection),
    Pg(&'a RefCell<PgConn>),
}

/// The engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A value bound to a statement or read from a row (SQLite's storage classes).
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// Something that can be bound as a statement parameter.
pub trait Param {
    fn value(&self) -> Value<'_>;
}

impl Param for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl Param for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl Param for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl Param for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl Param for bool {
    fn value(&self) -> Value<'_> {
        Value::Int(*self as i64)
    }
}
impl Param for f64 {
    fn value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}
macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn value(&self) -> Value<'_> {
                Value::Int(*self as i64)
            }
        }
    )*};
}
int_param!(i64, i32, u32, u16, u8, usize, u64);
impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}
impl<T: Param> Param for Option<T> {
    fn value(&self) -> Value<'_> {
        match self {
            Some(v) => v.value(),
            None => Value::Null,
        }
    }
}

/// The values of one statement's parameters (on the stack for up to eight: no allocation on
/// the hot path's point reads).
pub type Values<'a> = smallvec::SmallVec<[Value<'a>; 8]>;

/// The parameters of one statement.
pub trait Params {
    fn values(&self) -> Values<'_>;
}

impl Params for &[&dyn Param] {
    fn values(&self) -> Values<'_> {
        self.iter().map(|p| p.value()).collect()
    }
}
impl Params for [&dyn Param; 0] {
    fn values(&self) -> Values<'_> {
        Values::new()
    }
}
impl Params for () {
    fn values(&self) -> Values<'_> {
        Values::new()
    }
}
macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: Param> Params for [T; $n] {
            fn values(&self) -> Values<'_> {
                self.iter().map(|p| p.value()).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8);

/// `params![a, b, …]`: a parameter list of values of different types.
#[macro_export]
macro_rules! params {
    () => { &[] as &[&dyn $crate::store::sql::Param] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::store::sql::Param),+] as &[&dyn $crate::store::sql::Param] };
}

/// A value read from a column.
pub trait FromValue: Sized {
    fn from_value(v: Value<'_>) -> std::result::Result<Self, String>;
}

impl FromValue for String {
    fn from_value(v: Value<'_>) -> std::result::Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.to_owned()),
            Value::Int(i) => Ok(i.to_string()),
            Value::Real(f) => Ok(f.to_string()),
            Value::Blob(b) => String::from_utf8(b.to_vec()).map_err(|e| e.to_string()),
            Value::Null => Err("NULL where text was expected".into()),
        }
    }
}
impl FromValue for i64 {
    fn from_value(v: Value<'_>) -> std::result::Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i),
            Value::Real(f) if f.fract() == 0.0 => Ok(f as i64),
            other => Err(format!("{other:?} where an integer was expected")),
        }
    }
}
macro_rules! int_from {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: Value<'_>) -> std::result::Result<Self, String> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).map_err(|_| format!("{i} is out of range"))
            }
        }
    )*};
}
int_from!(i32, u32, u64, usize);
impl FromValue for f64 {
    fn from_value(v: Value<'_>) -> std::result::Result<Self, String> {
        match v {
            Value::Real(f) => Ok(f),
            Value::Int(i) => Ok(i as f64),
            other => Err(format!("{other:?} where a number was expected")),
        }
    }
}
impl FromValue for bool {
    fn from_value(v: Value<'_>) -> std::result::Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: Value<'_>) -> std::result::Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.to_vec()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            other => Err(format!("{other:?} where bytes were expected")),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value<'_>) -> std::result::Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A column's position (0-based).
pub trait ColumnIndex {
    fn index(self) -> usize;
}
impl ColumnIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One row of a result.
pub enum Row<'a> {
    Lite(&'a rusqlite::Row<'a>),
    Pg(&'a postgres::Row),
}

impl Row<'_> {
    /// The value of column `i` (0-based).
    pub fn get<I: ColumnIndex, T: FromValue>(&self, i: I) -> Result<T> {
        let i = i.index();
        let read = |v: Value<'_>| T::from_value(v).map_err(|m| db_err(format!("column {i}: {m}")));
        match self {
            Row::Lite(r) => {
                use rusqlite::types::ValueRef;
                let v = r.get_ref(i)?;
                read(match v {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Int(n),
                    ValueRef::Real(f) => Value::Real(f),
                    ValueRef::Text(t) => Value::Text(
                        std::str::from_utf8(t).map_err(|e| db_err(format!("column {i}: {e}")))?,
                    ),
                    ValueRef::Blob(b) => Value::Blob(b),
                })
            }
            Row::Pg(r) => super::pg::cell(r, i, read),
        }
    }
}

/// An error of the store, for the log.
pub(super) fn db_err(msg: impl Into<String>) -> Error {
    Error::Db(StoreError(msg.into().into()))
}

/// A statement to run on a [`Conn`] (SQLite keeps it in its statement cache; PostgreSQL in the
/// connection's).
pub struct Stmt<'c, 'a> {
    conn: &'c Conn<'a>,
    sql: &'c str,
}

impl Stmt<'_, '_> {
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        self.conn.execute(self.sql, params)
    }
    pub fn query_row<T, P: Params>(
        &mut self,
        params: P,
        f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.conn.query_row(self.sql, params, f)
    }
    pub fn query_opt<T, P: Params>(
        &mut self,
        params: P,
        f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        self.conn.query_opt(self.sql, params, f)
    }
    pub fn query_map<T, P: Params>(
        &mut self,
        params: P,
        f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.conn.query_map(self.sql, params, f)
    }
}

fn lite_params<'v>(values: &'v [Value<'v>]) -> impl Iterator<Item = LiteValue<'v>> {
    values.iter().map(LiteValue)
}

/// A [`Value`] as rusqlite binds it.
struct LiteValue<'v>(&'v Value<'v>);

impl rusqlite::ToSql for LiteValue<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self.0 {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(i),
            Value::Real(f) => ValueRef::Real(f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl<'a> Conn<'a> {
    /// The engine this connection talks to.
    pub fn backend(&self) -> Backend {
        match self.0 {
            Db::Lite(_) => Backend::Sqlite,
            Db::Pg(_) => Backend::Postgres,
        }
    }

    /// The SQLite connection underneath, for what only SQLite has (`PRAGMA`s of `trex.db`).
    pub(super) fn lite(&self) -> Option<&'a rusqlite::Connection> {
        match self.0 {
            Db::Lite(c) => Some(c),
            Db::Pg(_) => None,
        }
    }

    /// A statement, for callers that run it more than once.
    pub fn prepare_cached<'c>(&'c self, sql: &'c str) -> Result<Stmt<'c, 'a>> {
        Ok(Stmt { conn: self, sql })
    }

    /// Same as [`prepare_cached`](Self::prepare_cached).
    pub fn prepare<'c>(&'c self, sql: &'c str) -> Result<Stmt<'c, 'a>> {
        self.prepare_cached(sql)
    }

    /// Runs one statement; returns the rows it changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        counted();
        let values = params.values();
        match &self.0 {
            Db::Lite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(lite_params(&values)))?),
            Db::Pg(c) => c.borrow_mut().execute(sql, &values),
        }
    }

    /// Runs statements without parameters, separated by `;`.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        counted();
        match &self.0 {
            Db::Lite(c) => Ok(c.execute_batch(sql)?),
            Db::Pg(c) => c.borrow_mut().batch(sql),
        }
    }

    /// The rows of a query, each turned into a `T` by `f`.
    pub fn query_map<T, P: Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.rows(sql, params, usize::MAX, f)
    }

    /// The first row of a query, or `None`.
    pub fn query_opt<T, P: Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        Ok(self.rows(sql, params, 1, f)?.into_iter().next())
    }

    /// At most `limit` rows of a query, each turned into a `T` by `f`.
    fn rows<T, P: Params>(
        &self,
        sql: &str,
        params: P,
        limit: usize,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        counted();
        let values = params.values();
        match &self.0 {
            Db::Lite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let mut rows = st.query(rusqlite::params_from_iter(lite_params(&values)))?;
                let mut out = Vec::new();
                while out.len() < limit
                    && let Some(r) = rows.next()?
                {
                    out.push(f(&Row::Lite(r))?);
                }
                Ok(out)
            }
            Db::Pg(c) => {
                let rows = c.borrow_mut().query(sql, &values)?;
                rows.iter().take(limit).map(|r| f(&Row::Pg(r))).collect()
            }
        }
    }

    /// The first row of a query; no row is an error (for queries that always return one).
    pub fn query_row<T, P: Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| db_err(format!("query returned no row: {sql}")))
    }
}

/// Whether a store error is a UNIQUE or PRIMARY KEY violation (a duplicate), on either engine.
pub fn is_unique_violation(e: &Error) -> bool {
    let Error::Db(StoreError(inner)) = e else {
        return false;
    };
    if let Some(rusqlite::Error::SqliteFailure(f, _)) = inner.downcast_ref::<rusqlite::Error>() {
        return f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY;
    }
    if let Some(p) = inner.downcast_ref::<postgres::Error>() {
        return p.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION);
    }
    false
}

/// Whether a store error is any constraint violation (CHECK, UNIQUE, FOREIGN KEY, NOT NULL).
pub fn is_constraint_violation(e: &Error) -> bool {
    let Error::Db(StoreError(inner)) = e else {
        return false;
    };
    if let Some(rusqlite::Error::SqliteFailure(f, _)) = inner.downcast_ref::<rusqlite::Error>() {
        return f.code == rusqlite::ErrorCode::ConstraintViolation;
    }
    if let Some(p) = inner.downcast_ref::<postgres::Error>() {
        return p.code().is_some_and(|c| c.code().starts_with("23"));
    }
    false
}

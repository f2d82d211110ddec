//! Statement classes, decided by a real SQL parser (sqlparser): **Safe** reads, **Moderate** data
//! changes (INSERT/UPDATE/DELETE/MERGE, row locks), **Dangerous** everything else (DDL, ATTACH,
//! PRAGMA writes, transaction control, SET, COPY, GRANT, ...). Text that does not parse, or holds
//! more than one statement (`COMMIT; DROP …` escapes), is Dangerous.

use serde::Serialize;
use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Query, SetExpr, Statement, visit_expressions, visit_relations};
use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

/// How risky a statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Safe,
    Moderate,
    Dangerous,
}

/// The verdict on one piece of SQL.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub class: Class,
    /// Why, in words, for Dangerous ones.
    pub reason: String,
    /// A data-changing statement with `RETURNING`.
    pub returning: bool,
    /// A query (SELECT / WITH / VALUES / TABLE), as opposed to DML or a utility statement.
    pub query: bool,
}

/// SQL dialects the engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Sqlite,
    Postgres,
}

/// Read-only PRAGMAs that take a table or index name as argument (and only read).
pub const PRAGMAS_WITH_ARG: &[&str] = &[
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
];

/// PRAGMAs that only read (without a value).
const READ_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "database_list",
    "compile_options",
    "function_list",
    "collation_list",
    "user_version",
    "schema_version",
    "page_count",
    "page_size",
];

fn query_class(q: &Query) -> Class {
    let mut c = if q.locks.is_empty() {
        Class::Safe
    } else {
        Class::Moderate
    };
    if let Some(w) = &q.with {
        for cte in &w.cte_tables {
            c = c.max(query_class(&cte.query));
        }
    }
    c.max(set_class(&q.body))
}

fn set_class(s: &SetExpr) -> Class {
    match s {
        SetExpr::Select(sel) if sel.into.is_some() => Class::Dangerous,
        SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => Class::Safe,
        SetExpr::Query(q) => query_class(q),
        SetExpr::SetOperation { left, right, .. } => set_class(left).max(set_class(right)),
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            Class::Moderate
        }
    }
}

fn statement(s: &Statement) -> Verdict {
    let v = |class, reason: &str, returning| Verdict {
        class,
        reason: reason.to_string(),
        returning,
        query: false,
    };
    match s {
        Statement::Query(q) => {
            let c = query_class(q);
            Verdict {
                query: true,
                ..v(
                    c,
                    if c == Class::Dangerous {
                        "SELECT … INTO creates a table"
                    } else {
                        ""
                    },
                    false,
                )
            }
        }
        Statement::Insert(i) => v(Class::Moderate, "", i.returning.is_some()),
        Statement::Update(u) => v(Class::Moderate, "", u.returning.is_some()),
        Statement::Delete(d) => v(Class::Moderate, "", d.returning.is_some()),
        Statement::Merge(_) => v(Class::Moderate, "", false),
        // EXPLAIN is classed by what it explains: `EXPLAIN (ANALYZE) …` runs the statement, and
        // PostgreSQL does not hold a table-creating statement inside EXPLAIN to READ ONLY
        Statement::Explain {
            statement: inner, ..
        } => {
            let i = statement(inner);
            Verdict {
                query: false,
                returning: false,
                ..i
            }
        }
        Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowVariable { .. } => v(Class::Safe, "", false),
        Statement::Pragma { name, value, .. } => {
            let n = name.to_string().to_ascii_lowercase();
            let n = n.rsplit('.').next().unwrap_or(&n).to_string();

            if READ_PRAGMAS.contains(&n.as_str())
                && (value.is_none() || PRAGMAS_WITH_ARG.contains(&n.as_str()))
            {
                v(Class::Safe, "", false)
            } else {
                v(Class::Dangerous, "PRAGMA that changes settings", false)
            }
        }
        other => {
            let kind = other.to_string();
            let word = kind
                .split_whitespace()
                .next()
                .unwrap_or("statement")
                .to_ascii_uppercase();
            v(
                Class::Dangerous,
                &format!("{word} statements change the schema, settings or transaction state"),
                false,
            )
        }
    }
}

/// Functions with effects outside the statement's tables (large objects, notifications, locks,
/// settings, files, other connections, extension loading): calling one makes a statement
/// Dangerous, whatever else it does. Names ending in `_` are prefixes.
const SIDE_EFFECT_FUNCTIONS: &[&str] = &[
    "lo_",
    "pg_advisory_",
    "pg_try_advisory_",
    "dblink",
    "pg_notify",
    "set_config",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_logical_emit_message",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_",
    "pg_stat_file",
    "pg_file_",
    "pg_import_system_collations",
    "load_extension",
    "writefile",
    "readfile",
    "fts3_tokenizer",
    "edit",
];

fn side_effect(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('"', "");
    let base = n.rsplit('.').next().unwrap_or(&n);
    SIDE_EFFECT_FUNCTIONS.iter().any(|f| {
        if f.ends_with('_') {
            base.starts_with(f)
        } else {
            base == *f
        }
    })
}

/// The first side-effecting function a statement calls (in expressions or in FROM).
fn side_effect_call(s: &Statement) -> Option<String> {
    let mut found = None;
    let _ = visit_expressions(s, |e| {
        if let Expr::Function(f) = e
            && side_effect(&f.name.to_string())
        {
            found = Some(f.name.to_string());
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if found.is_none() {
        let _ = visit_relations(s, |r| {
            if side_effect(&r.to_string()) {
                found = Some(r.to_string());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
    }
    found
}

/// Classifies `sql` (exactly one statement expected).
pub fn classify(sql: &str, flavor: Flavor) -> Verdict {
    let dialect: Box<dyn Dialect> = match flavor {
        Flavor::Sqlite => Box::new(SQLiteDialect {}),
        Flavor::Postgres => Box::new(PostgreSqlDialect {}),
    };
    match Parser::parse_sql(dialect.as_ref(), sql) {
        Err(e) => Verdict {
            class: Class::Dangerous,
            reason: format!("the statement could not be classified ({e})"),
            returning: false,
            query: false,
        },
        Ok(stmts) if stmts.len() != 1 => Verdict {
            class: Class::Dangerous,
            reason: format!(
                "exactly one statement per call is allowed (found {})",
                stmts.len()
            ),
            returning: false,
            query: false,
        },
        Ok(stmts) => match side_effect_call(&stmts[0]) {
            Some(f) => Verdict {
                class: Class::Dangerous,
                reason: format!("it calls {f}(), which has effects outside the query"),
                returning: false,
                query: false,
            },
            None => statement(&stmts[0]),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(sql: &str) -> Class {
        classify(sql, Flavor::Postgres).class
    }

    #[test]
    fn classes() {
        assert_eq!(c("SELECT * FROM t WHERE a = $1"), Class::Safe);
        assert_eq!(c("WITH x AS (SELECT 1) SELECT * FROM x"), Class::Safe);
        assert_eq!(c("EXPLAIN SELECT 1"), Class::Safe);
        assert_eq!(c("INSERT INTO t VALUES (1)"), Class::Moderate);
        assert_eq!(c("UPDATE t SET a = 1"), Class::Moderate);
        assert_eq!(c("DELETE FROM t"), Class::Moderate);
        assert_eq!(c("SELECT * FROM t FOR UPDATE"), Class::Moderate);
        assert_eq!(
            c("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"),
            Class::Moderate
        );
        assert_eq!(c("DROP TABLE t"), Class::Dangerous);
        assert_eq!(c("CREATE TABLE t (a int)"), Class::Dangerous);
        assert_eq!(c("SELECT * INTO t2 FROM t"), Class::Dangerous);
        assert_eq!(c("COMMIT; DROP TABLE t"), Class::Dangerous);
        assert_eq!(c("SELECT 1; SELECT 2"), Class::Dangerous);
        assert_eq!(c("SET statement_timeout = 0"), Class::Dangerous);
        assert_eq!(c("BEGIN"), Class::Dangerous);
        assert_eq!(c("EXPLAIN ANALYZE DELETE FROM t"), Class::Moderate);
        assert_eq!(
            c("EXPLAIN (ANALYZE) CREATE TABLE x AS SELECT 1"),
            Class::Dangerous
        );
        assert_eq!(c("EXPLAIN CREATE TABLE x AS SELECT 1"), Class::Dangerous);
        assert_eq!(c("SELECT lo_from_bytea(0, 'x')"), Class::Dangerous);
        assert_eq!(c("SELECT pg_notify('a', 'b')"), Class::Dangerous);
        assert_eq!(c("SELECT pg_catalog.pg_advisory_lock(1)"), Class::Dangerous);
        assert_eq!(c("SELECT * FROM pg_ls_dir('.')"), Class::Dangerous);
        assert_eq!(c("SELECT upper(name) FROM t"), Class::Safe);
        assert_eq!(c("this is not sql"), Class::Dangerous);
        assert!(classify("INSERT INTO t VALUES (1) RETURNING id", Flavor::Postgres).returning);
        let s = |q| classify(q, Flavor::Sqlite).class;
        assert_eq!(s("ATTACH DATABASE 'trex.db' AS t"), Class::Dangerous);
        assert_eq!(s("PRAGMA table_info('t')"), Class::Safe);
        assert_eq!(s("PRAGMA journal_mode = DELETE"), Class::Dangerous);
        assert_eq!(s("SELECT load_extension('x')"), Class::Dangerous);
    }
}

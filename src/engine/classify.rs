//! Statement classes, decided by a real SQL parser (sqlparser): **Safe** reads, **Moderate** data
//! changes (INSERT/UPDATE/DELETE/MERGE, row locks), **Dangerous** everything else (DDL, ATTACH,
//! PRAGMA writes, transaction control, SET, COPY, GRANT, ...). Text that does not parse, or holds
//! more than one statement (`COMMIT; DROP …` escapes), is Dangerous.

use serde::Serialize;
use sqlparser::ast::{Query, SetExpr, Statement};
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
        Statement::Explain {
            analyze,
            statement: inner,
            ..
        } => {
            if *analyze {
                statement(inner)
            } else {
                v(Class::Safe, "", false)
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
        Ok(stmts) => statement(&stmts[0]),
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
        assert_eq!(c("this is not sql"), Class::Dangerous);
        assert!(classify("INSERT INTO t VALUES (1) RETURNING id", Flavor::Postgres).returning);
        let s = |q| classify(q, Flavor::Sqlite).class;
        assert_eq!(s("ATTACH DATABASE 'trex.db' AS t"), Class::Dangerous);
        assert_eq!(s("PRAGMA table_info('t')"), Class::Safe);
        assert_eq!(s("PRAGMA journal_mode = DELETE"), Class::Dangerous);
        assert_eq!(
            s("SELECT load_extension('x')"),
            Class::Safe,
            "reads by class; the engine refuses the function"
        );
    }
}

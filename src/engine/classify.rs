//! Statement classes, decided by a real SQL parser (sqlparser), never by matching text:
//!
//! - **Safe**: one query (SELECT / WITH / VALUES, without `INTO` or row locks), `EXPLAIN`
//!   of a Safe statement, `SHOW`, and (SQLite) the read-only PRAGMAs. On PostgreSQL a Safe
//!   statement calls only functions on `PG_ALLOWED_FUNCTIONS` (plus the SQL keywords that read
//!   like calls, `PG_KEYWORD_CALLS`), in expressions, in FROM and through attribute notation
//!   (`(v).f` is `f(v)` to the server) alike. It runs in a read-only transaction.
//! - **Moderate**: INSERT / UPDATE / DELETE / MERGE (also inside a `WITH`), `SELECT … FOR
//!   UPDATE/SHARE`, `EXPLAIN` of those; the same function rule as Safe. On PostgreSQL, a data
//!   change whose target is a system catalog (schema `pg_catalog`, `information_schema` or any
//!   other `pg_*` schema, or an unqualified `pg_*` name) is Dangerous.
//! - **Dangerous**: everything else: DDL, ATTACH, PRAGMA writes, transaction control, SET, COPY,
//!   GRANT, CALL, DO, `SELECT … INTO`; on PostgreSQL any call of a function that is not on the
//!   list (a user-defined or schema-qualified one included); on SQLite a call of a function on the
//!   deny-list (`load_extension`, …: the engine's authorizer does the rest). Text that does not
//!   parse, or holds more than one statement (`COMMIT; DROP …` escapes), is Dangerous.
//!
//! Names are compared the way the server resolves them. PostgreSQL: unquoted identifiers are
//! folded to lower case (ASCII only, as the server does), double-quoted ones are taken verbatim,
//! `U&"…"` identifiers (with `\XXXX` / `\+XXXXXX` escapes and an optional `UESCAPE 'c'`) are
//! decoded before parsing; `pg_catalog.f` is looked up as `f`, any other qualification is not on
//! the list. SQLite: names are case-insensitive whether quoted or not. `docs/sql-classes.md`
//! describes the rules for users.

use serde::Serialize;
use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AccessExpr, BinaryOperator, Expr, FromTable, Ident, ObjectName, ObjectNamePart, Query, SetExpr,
    Statement, TableFactor, TableObject, TableWithJoins, Visit, Visitor,
};
use sqlparser::dialect::{PostgreSqlDialect, SQLiteDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Word};

/// How risky a statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Safe,
    Moderate,
    Dangerous,
}

impl Class {
    /// The class as a word (`Safe`, `Moderate`, `Dangerous`).
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Safe => "Safe",
            Class::Moderate => "Moderate",
            Class::Dangerous => "Dangerous",
        }
    }
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
    /// Why the text could not be classed as one statement, if it could not.
    pub problem: Option<Problem>,
}

/// Text the classifier could not read as exactly one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The parser did not understand it (its message). The engine then asks the database itself:
    /// a real syntax error is reported as one; SQL the database accepts stays Dangerous.
    Unparsed(String),
    /// More than one statement (how many).
    Several(usize),
    /// An EXPLAIN of a statement that builds large values from small ones (`repeat()`, …):
    /// PostgreSQL folds them into the plan text, which cannot be bounded the way rows are.
    Amplifies(String),
}

/// Functions whose result can be far larger than their arguments; the plan of an EXPLAIN
/// carries their folded results.
const AMPLIFIERS: &[&str] = &[
    "array_fill",
    "format",
    "lpad",
    "overlay",
    "regexp_replace",
    "repeat",
    "replace",
    "rpad",
];

/// Longest type length (`char(n)`, `varchar(n)`, `bit(n)`) an EXPLAIN may cast to: the cast is
/// folded into the plan, padded to `n`.
const EXPLAIN_TYPE_LENGTH_MAX: u64 = 4096;

/// The first size-amplifying function or cast an EXPLAIN carries.
fn explain_amplifier(s: &Statement) -> Option<String> {
    let Statement::Explain { statement, .. } = s else {
        return None;
    };
    let mut found = None;
    let _ = sqlparser::ast::visit_expressions(statement.as_ref(), |e| {
        match e {
            Expr::Function(f) => {
                if let Some(last) = f.name.0.last().and_then(|p| p.as_ident()) {
                    let n = ident_name(last, Flavor::Postgres);
                    if AMPLIFIERS.contains(&n.as_str()) {
                        found = Some(n);
                        return ControlFlow::Break(());
                    }
                }
            }
            Expr::Cast { data_type, .. } => {
                // any length in the type's text: char(10485760), varchar(…), bit(…), arrays of them
                let t = data_type.to_string();
                let big = t
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|d| d.parse::<u64>().ok())
                    .any(|n| n > EXPLAIN_TYPE_LENGTH_MAX);
                if big {
                    found = Some(format!("a cast to {t}"));
                    return ControlFlow::Break(());
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    });
    found
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
        problem: None,
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

/// The PostgreSQL functions a Safe or Moderate statement may call: built-ins (schema
/// `pg_catalog`) that have no effect outside the query and run no SQL text they are given —
/// arithmetic, strings, date/time, JSON, arrays, ranges, text search, aggregates and window
/// functions, type conversions, and catalog or size readers. Anything else — files
/// (`pg_read_file`, `pg_ls_dir`), large objects, other sessions, settings (`set_config`), locks,
/// notifications, sequences (`nextval`), replication, backups, statistics resets, and functions
/// that run a query given as text (`query_to_xml`, `ts_stat`, `ts_rewrite`, `dblink`) — is left
/// out, so calling it makes a statement Dangerous; so does every function of an extension or a
/// user, as the name could resolve to anything. A few names are built in only from PostgreSQL 16,
/// 17 or 18 (`any_value`, `date_add`, `uuidv7`, …). Sorted (binary search; a test checks it).
const PG_ALLOWED_FUNCTIONS: &[&str] = &[
    "abbrev",
    "abs",
    "acos",
    "acosd",
    "acosh",
    "age",
    "any_value",
    "area",
    "array_agg",
    "array_append",
    "array_cat",
    "array_dims",
    "array_fill",
    "array_length",
    "array_lower",
    "array_ndims",
    "array_position",
    "array_positions",
    "array_prepend",
    "array_remove",
    "array_replace",
    "array_reverse",
    "array_sample",
    "array_shuffle",
    "array_sort",
    "array_to_json",
    "array_to_string",
    "array_to_tsvector",
    "array_upper",
    "ascii",
    "asin",
    "asind",
    "asinh",
    "atan",
    "atan2",
    "atan2d",
    "atand",
    "atanh",
    "avg",
    "bit_and",
    "bit_count",
    "bit_length",
    "bit_or",
    "bit_xor",
    "bool",
    "bool_and",
    "bool_or",
    "box",
    "bpchar",
    "broadcast",
    "btrim",
    "cardinality",
    "casefold",
    "cbrt",
    "ceil",
    "ceiling",
    "center",
    "char_length",
    "character_length",
    "chr",
    "cidr",
    "circle",
    "clock_timestamp",
    "col_description",
    "concat",
    "concat_ws",
    "convert",
    "convert_from",
    "convert_to",
    "corr",
    "cos",
    "cosd",
    "cosh",
    "cot",
    "cotd",
    "count",
    "covar_pop",
    "covar_samp",
    "crc32",
    "crc32c",
    "cume_dist",
    "current_database",
    "current_query",
    "current_schema",
    "current_schemas",
    "current_setting",
    "current_user",
    "date",
    "date_add",
    "date_bin",
    "date_part",
    "date_subtract",
    "date_trunc",
    "daterange",
    "decode",
    "degrees",
    "dense_rank",
    "diameter",
    "div",
    "encode",
    "enum_first",
    "enum_last",
    "enum_range",
    "erf",
    "erfc",
    "every",
    "exp",
    "extract",
    "factorial",
    "family",
    "first_value",
    "float4",
    "float8",
    "floor",
    "format",
    "format_type",
    "gcd",
    "gen_random_uuid",
    "generate_series",
    "generate_subscripts",
    "get_bit",
    "get_byte",
    "get_current_ts_config",
    "has_any_column_privilege",
    "has_column_privilege",
    "has_database_privilege",
    "has_foreign_data_wrapper_privilege",
    "has_function_privilege",
    "has_language_privilege",
    "has_parameter_privilege",
    "has_schema_privilege",
    "has_sequence_privilege",
    "has_server_privilege",
    "has_table_privilege",
    "has_tablespace_privilege",
    "has_type_privilege",
    "height",
    "host",
    "hostmask",
    "inet_merge",
    "inet_same_family",
    "initcap",
    "int2",
    "int4",
    "int4range",
    "int8",
    "int8range",
    "interval",
    "is_normalized",
    "isclosed",
    "isempty",
    "isfinite",
    "isopen",
    "json_agg",
    "json_agg_strict",
    "json_array_elements",
    "json_array_elements_text",
    "json_array_length",
    "json_build_array",
    "json_build_object",
    "json_each",
    "json_each_text",
    "json_extract_path",
    "json_extract_path_text",
    "json_object",
    "json_object_agg",
    "json_object_agg_strict",
    "json_object_agg_unique",
    "json_object_agg_unique_strict",
    "json_object_keys",
    "json_populate_record",
    "json_populate_recordset",
    "json_strip_nulls",
    "json_to_record",
    "json_to_recordset",
    "json_typeof",
    "jsonb_agg",
    "jsonb_agg_strict",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_insert",
    "jsonb_object",
    "jsonb_object_agg",
    "jsonb_object_agg_strict",
    "jsonb_object_agg_unique",
    "jsonb_object_agg_unique_strict",
    "jsonb_object_keys",
    "jsonb_path_exists",
    "jsonb_path_exists_tz",
    "jsonb_path_match",
    "jsonb_path_match_tz",
    "jsonb_path_query",
    "jsonb_path_query_array",
    "jsonb_path_query_array_tz",
    "jsonb_path_query_first",
    "jsonb_path_query_first_tz",
    "jsonb_path_query_tz",
    "jsonb_populate_record",
    "jsonb_populate_record_valid",
    "jsonb_populate_recordset",
    "jsonb_pretty",
    "jsonb_set",
    "jsonb_set_lax",
    "jsonb_strip_nulls",
    "jsonb_to_record",
    "jsonb_to_recordset",
    "jsonb_typeof",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "lag",
    "last_value",
    "lcm",
    "lead",
    "left",
    "length",
    "line",
    "lower",
    "lower_inc",
    "lower_inf",
    "lpad",
    "lseg",
    "ltrim",
    "macaddr",
    "make_date",
    "make_interval",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "masklen",
    "max",
    "md5",
    "min",
    "min_scale",
    "mod",
    "mode",
    "multirange",
    "netmask",
    "network",
    "normalize",
    "now",
    "npoints",
    "nth_value",
    "ntile",
    "num_nonnulls",
    "num_nulls",
    "numeric",
    "numnode",
    "numrange",
    "obj_description",
    "octet_length",
    "overlay",
    "parse_ident",
    "path",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "pg_client_encoding",
    "pg_collation_is_visible",
    "pg_column_size",
    "pg_conf_load_time",
    "pg_conversion_is_visible",
    "pg_database_size",
    "pg_describe_object",
    "pg_encoding_to_char",
    "pg_function_is_visible",
    "pg_get_constraintdef",
    "pg_get_expr",
    "pg_get_function_arguments",
    "pg_get_function_identity_arguments",
    "pg_get_function_result",
    "pg_get_functiondef",
    "pg_get_indexdef",
    "pg_get_keywords",
    "pg_get_ruledef",
    "pg_get_serial_sequence",
    "pg_get_statisticsobjdef",
    "pg_get_triggerdef",
    "pg_get_userbyid",
    "pg_get_viewdef",
    "pg_has_role",
    "pg_identify_object",
    "pg_indexes_size",
    "pg_input_error_info",
    "pg_input_is_valid",
    "pg_is_in_recovery",
    "pg_jit_available",
    "pg_opclass_is_visible",
    "pg_operator_is_visible",
    "pg_opfamily_is_visible",
    "pg_postmaster_start_time",
    "pg_relation_size",
    "pg_size_bytes",
    "pg_size_pretty",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_statistics_obj_is_visible",
    "pg_table_is_visible",
    "pg_table_size",
    "pg_tablespace_size",
    "pg_total_relation_size",
    "pg_ts_config_is_visible",
    "pg_ts_dict_is_visible",
    "pg_ts_parser_is_visible",
    "pg_ts_template_is_visible",
    "pg_type_is_visible",
    "pg_typeof",
    "phraseto_tsquery",
    "pi",
    "plainto_tsquery",
    "point",
    "polygon",
    "position",
    "pow",
    "power",
    "querytree",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "radians",
    "radius",
    "random",
    "random_normal",
    "range_agg",
    "range_intersect_agg",
    "range_merge",
    "rank",
    "regexp_count",
    "regexp_instr",
    "regexp_like",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "regexp_split_to_table",
    "regexp_substr",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_number",
    "row_security_active",
    "row_to_json",
    "rpad",
    "rtrim",
    "scale",
    "session_user",
    "set_bit",
    "set_byte",
    "set_masklen",
    "setweight",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "shobj_description",
    "sign",
    "sin",
    "sind",
    "sinh",
    "slope",
    "split_part",
    "sqrt",
    "starts_with",
    "statement_timestamp",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "string_to_array",
    "string_to_table",
    "strip",
    "strpos",
    "substr",
    "substring",
    "sum",
    "tan",
    "tand",
    "tanh",
    "text",
    "time",
    "timeofday",
    "timestamp",
    "timestamptz",
    "timetz",
    "timezone",
    "to_ascii",
    "to_bin",
    "to_char",
    "to_date",
    "to_hex",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_oct",
    "to_regclass",
    "to_regcollation",
    "to_regnamespace",
    "to_regoper",
    "to_regoperator",
    "to_regproc",
    "to_regprocedure",
    "to_regrole",
    "to_regtype",
    "to_regtypemod",
    "to_timestamp",
    "to_tsquery",
    "to_tsvector",
    "transaction_timestamp",
    "translate",
    "trim_array",
    "trim_scale",
    "trunc",
    "ts_delete",
    "ts_filter",
    "ts_headline",
    "ts_rank",
    "ts_rank_cd",
    "tsquery_phrase",
    "tsrange",
    "tstzrange",
    "tsvector_to_array",
    "unistr",
    "unnest",
    "upper",
    "upper_inc",
    "upper_inf",
    "uuid_extract_timestamp",
    "uuid_extract_version",
    "uuidv4",
    "uuidv7",
    "var_pop",
    "var_samp",
    "varchar",
    "variance",
    "version",
    "websearch_to_tsquery",
    "width",
    "width_bucket",
    "xml_is_well_formed",
    "xml_is_well_formed_content",
    "xml_is_well_formed_document",
    "xmlagg",
    "xmlcomment",
    "xmltext",
    "xpath",
    "xpath_exists",
];

/// SQL keywords with call syntax that sqlparser presents as function calls (`CURRENT_TIMESTAMP`,
/// `COALESCE(…)`, `NULLIF(…)`, …). The server treats them as grammar, not as function names, so they
/// are allowed only unquoted and unqualified: `"coalesce"(a, b)` would call a function of that
/// name, which is not built in. Sorted.
const PG_KEYWORD_CALLS: &[&str] = &[
    "array",
    "coalesce",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "greatest",
    "grouping",
    "least",
    "localtime",
    "localtimestamp",
    "nullif",
    "row",
    "user",
];

/// SQLite only: functions with effects outside the statement's tables (extension loading, files,
/// …); calling one makes a statement Dangerous. Names ending in `_` are prefixes. (The list also
/// holds PostgreSQL names, from before PostgreSQL had its allow-list; they cost nothing here.)
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

/// One identifier, normalised the way the server looks it up.
fn ident_name(id: &Ident, flavor: Flavor) -> String {
    match (flavor, id.quote_style) {
        (Flavor::Postgres, Some(_)) => id.value.clone(),
        _ => id.value.to_ascii_lowercase(),
    }
}

/// The normalised parts of a name, each with whether it was quoted; `None` when a part is not a
/// plain identifier.
fn name_parts(name: &ObjectName, flavor: Flavor) -> Option<Vec<(String, bool)>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => {
                Some((ident_name(id, flavor), id.quote_style.is_some()))
            }
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// A name for messages: the normalised parts, quoted where the plain form would read differently.
fn shown(name: &ObjectName, flavor: Flavor) -> String {
    match name_parts(name, flavor) {
        None => name.to_string(),
        Some(parts) => parts
            .iter()
            .map(|(p, _)| {
                let plain = p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && p.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$'
                    });
                if plain {
                    p.clone()
                } else {
                    format!("\"{}\"", p.replace('"', "\"\""))
                }
            })
            .collect::<Vec<_>>()
            .join("."),
    }
}

/// Whether a Safe statement may call the PostgreSQL function `name`.
fn pg_allowed(name: &ObjectName) -> bool {
    let listed = |f: &str| PG_ALLOWED_FUNCTIONS.binary_search(&f).is_ok();
    match name_parts(name, Flavor::Postgres).as_deref() {
        Some([(f, quoted)]) => {
            listed(f) || (!quoted && PG_KEYWORD_CALLS.binary_search(&f.as_str()).is_ok())
        }
        Some([(schema, _), (f, _)]) => schema == "pg_catalog" && listed(f),
        _ => false,
    }
}

/// SQLite: whether `name` is on the deny-list.
fn sqlite_denied(name: &ObjectName) -> bool {
    let Some(parts) = name_parts(name, Flavor::Sqlite) else {
        return false;
    };
    let Some((base, _)) = parts.last() else {
        return false;
    };
    SIDE_EFFECT_FUNCTIONS.iter().any(|f| {
        if f.ends_with('_') {
            base.starts_with(f)
        } else {
            base == f
        }
    })
}

/// A PostgreSQL schema name in the text of an `OPERATOR(schema.op)` part.
fn pg_token_ident(t: &str) -> String {
    match t.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => t.to_ascii_lowercase(),
    }
}

/// PostgreSQL: why a data change is Dangerous for its target — a system catalog, or a target
/// that is not a table name — if it is.
fn catalog_write(s: &Statement) -> Option<String> {
    let catalog = |name: &ObjectName| -> Option<String> {
        let parts = name_parts(name, Flavor::Postgres)?;
        let hit = match parts.as_slice() {
            [(table, _)] => table.starts_with("pg_"),
            [.., (schema, _), _] => schema.starts_with("pg_") || schema == "information_schema",
            [] => false,
        };
        hit.then(|| {
            format!(
                "it changes {}, which is a system catalog",
                shown(name, Flavor::Postgres)
            )
        })
    };
    let in_tables = |ts: &[TableWithJoins]| {
        ts.iter().find_map(|t| {
            std::iter::once(&t.relation)
                .chain(t.joins.iter().map(|j| &j.relation))
                .find_map(|f| match f {
                    TableFactor::Table { name, .. } => catalog(name),
                    _ => None,
                })
        })
    };
    match s {
        Statement::Insert(i) => match &i.table {
            TableObject::TableName(name) => catalog(name),
            TableObject::TableFunction(_) | TableObject::TableQuery(_) => {
                Some("its target is not a table name".to_string())
            }
        },
        Statement::Update(u) => in_tables(std::slice::from_ref(&u.table)),
        Statement::Delete(d) => {
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
            d.tables
                .iter()
                .find_map(catalog)
                .or_else(|| in_tables(from))
        }
        Statement::Merge(m) => match &m.table {
            TableFactor::Table { name, .. } => catalog(name),
            _ => None,
        },
        _ => None,
    }
}

/// Walks a statement for what its class does not show: function calls (in expressions and in
/// FROM), operators named by schema, and (PostgreSQL) data changes on system catalogs.
struct Check {
    flavor: Flavor,
    /// Aliases of functions in FROM (`unnest(…) AS t`), each occurrence with its declared column
    /// names (`None`: no column list, so the one column is named like the alias). In PostgreSQL
    /// `t.f` on such an alias, when `f` is not one of its columns, is the call `f(t)` of the
    /// function's (scalar) value — `SELECT t.pg_read_file FROM unnest(…) t`. Aliases are not
    /// resolved by scope: every occurrence of a name counts, so a second `t` elsewhere cannot
    /// lend its columns.
    fn_aliases: HashMap<String, Vec<Option<Vec<String>>>>,
}

/// Collects the aliases of functions in FROM, for [`Check`].
struct FnAliases(HashMap<String, Vec<Option<Vec<String>>>>);

impl Visitor for FnAliases {
    type Break = ();

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        let (alias, default) = match t {
            TableFactor::Table {
                name,
                args: Some(_),
                alias,
                ..
            }
            | TableFactor::Function { name, alias, .. } => (
                alias,
                name.0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| ident_name(i, Flavor::Postgres)),
            ),
            TableFactor::UNNEST { alias, .. } => (alias, Some("unnest".to_string())),
            TableFactor::TableFunction { alias, .. } => (alias, None),
            _ => return ControlFlow::Continue(()),
        };
        let (name, columns) = match alias {
            Some(a) if !a.columns.is_empty() => (
                Some(ident_name(&a.name, Flavor::Postgres)),
                Some(
                    a.columns
                        .iter()
                        .map(|c| ident_name(&c.name, Flavor::Postgres))
                        .collect(),
                ),
            ),
            Some(a) => (Some(ident_name(&a.name, Flavor::Postgres)), None),
            None => (default, None),
        };
        if let Some(n) = name {
            self.0.entry(n).or_default().push(columns);
        }
        ControlFlow::Continue(())
    }
}

impl Check {
    fn call(&self, name: &ObjectName) -> ControlFlow<String> {
        match self.flavor {
            Flavor::Postgres if !pg_allowed(name) => ControlFlow::Break(format!(
                "it calls {}(), which is not on the list of functions a Safe statement may call",
                shown(name, self.flavor)
            )),
            Flavor::Sqlite if sqlite_denied(name) => ControlFlow::Break(format!(
                "it calls {}(), which has effects outside the query",
                shown(name, self.flavor)
            )),
            _ => ControlFlow::Continue(()),
        }
    }
}

impl Visitor for Check {
    type Break = String;

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<String> {
        if self.flavor == Flavor::Postgres
            && let Some(reason) = catalog_write(s)
        {
            return ControlFlow::Break(reason);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<String> {
        match e {
            Expr::Function(f) => self.call(&f.name),
            // `t.f` where `t` names a function in FROM and `f` is none of its columns (nor the
            // default column, named like `t`): PostgreSQL runs it as `f(t)`
            Expr::CompoundIdentifier(ids) if self.flavor == Flavor::Postgres && ids.len() >= 2 => {
                let q = ident_name(&ids[ids.len() - 2], Flavor::Postgres);
                let f = ident_name(&ids[ids.len() - 1], Flavor::Postgres);
                // a column of that function only when every function of that name has it
                let a_call = |cols: &Option<Vec<String>>| match cols {
                    Some(c) => !c.contains(&f),
                    None => f != q,
                };
                match self.fn_aliases.get(&q) {
                    Some(all)
                        if all.iter().any(a_call)
                            && PG_ALLOWED_FUNCTIONS.binary_search(&f.as_str()).is_err() =>
                    {
                        ControlFlow::Break(format!(
                            "it reads {q}.{f} from a function in FROM, which PostgreSQL runs as {f}({q}), \
                             and {f}() is not on the list of functions a Safe statement may call"
                        ))
                    }
                    _ => ControlFlow::Continue(()),
                }
            }
            // PostgreSQL reads `(v).f`, `$1.f` or `col[1].f` as the call `f(v)` when `v` has no
            // field `f` (attribute notation: `('/etc/passwd').pg_read_file` reads the file), so
            // a field selected from a value must be a name on the list. The leading parts of a
            // column reference (`t.col[1]`) are names, not selections; a call reached through
            // them (`t.f` is `f(t)`) gets a whole row, which no built-in off the list accepts.
            Expr::CompoundFieldAccess { root, access_chain } if self.flavor == Flavor::Postgres => {
                let mut in_name =
                    matches!(**root, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                for a in access_chain {
                    let fields = match a {
                        AccessExpr::Dot(Expr::Identifier(_)) if in_name => continue,
                        AccessExpr::Dot(Expr::Identifier(id)) => std::slice::from_ref(id),
                        AccessExpr::Dot(Expr::CompoundIdentifier(ids)) => ids.as_slice(),
                        AccessExpr::Dot(_) => &[],
                        AccessExpr::Subscript(_) => &[],
                    };
                    in_name = false;
                    for id in fields {
                        let f = ident_name(id, Flavor::Postgres);
                        if PG_ALLOWED_FUNCTIONS.binary_search(&f.as_str()).is_err() {
                            let f = shown(&ObjectName::from(vec![id.clone()]), self.flavor);
                            return ControlFlow::Break(format!(
                                "it selects .{f} from a value, which PostgreSQL runs as {f}(value) \
                                 when the value has no field {f}, and {f}() is not on the list of \
                                 functions a Safe statement may call"
                            ));
                        }
                    }
                }
                ControlFlow::Continue(())
            }
            // `OPERATOR(myschema.+)` runs whatever function that operator is bound to
            Expr::BinaryOp { op, .. }
            | Expr::AnyOp { compare_op: op, .. }
            | Expr::AllOp { compare_op: op, .. }
                if self.flavor == Flavor::Postgres =>
            {
                match op {
                    BinaryOperator::PGCustomBinaryOperator(parts)
                        if parts.len() > 1
                            && pg_token_ident(&parts[parts.len() - 2]) != "pg_catalog" =>
                    {
                        ControlFlow::Break(format!(
                            "it uses OPERATOR({}), which is not a built-in operator",
                            parts.join(".")
                        ))
                    }
                    _ => ControlFlow::Continue(()),
                }
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<String> {
        match t {
            // a name with arguments in FROM is a table function: `FROM generate_series(1, 3)`
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.call(name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<String> {
        // SQLite keeps its old check of every relation name against the deny-list
        if self.flavor == Flavor::Sqlite && sqlite_denied(r) {
            return ControlFlow::Break(format!(
                "it calls {}(), which has effects outside the query",
                shown(r, self.flavor)
            ));
        }
        ControlFlow::Continue(())
    }
}

/// Exactly `n` hex digits from `chars`, as a number.
fn hex_digits(chars: &mut std::str::Chars, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for _ in 0..n {
        v = v * 16 + chars.next()?.to_digit(16)?;
    }
    Some(v)
}

/// Decodes the body of a PostgreSQL `U&"…"` identifier, as the server does: `<esc>XXXX`,
/// `<esc>+XXXXXX`, `<esc><esc>`, UTF-16 surrogate pairs; anything else is an error.
fn unicode_unescape(s: &str, esc: char) -> Result<String, String> {
    let bad = || format!("invalid Unicode escape in the identifier U&\"{s}\"");
    let mut out = String::new();
    let mut chars = s.chars();
    let mut high: Option<u32> = None;
    while let Some(c) = chars.next() {
        if c != esc {
            if high.is_some() {
                return Err(bad());
            }
            out.push(c);
            continue;
        }
        let mut rest = chars.clone();
        let code = match rest.next() {
            Some(n) if n == esc => {
                chars = rest;
                if high.is_some() {
                    return Err(bad());
                }
                out.push(esc);
                continue;
            }
            Some('+') => {
                let v = hex_digits(&mut rest, 6);
                chars = rest;
                v
            }
            _ => hex_digits(&mut chars, 4),
        }
        .ok_or_else(bad)?;
        match (high.take(), code) {
            (Some(h), 0xDC00..=0xDFFF) => out.push(
                char::from_u32(0x10000 + ((h - 0xD800) << 10) + (code - 0xDC00)).ok_or_else(bad)?,
            ),
            (Some(_), _) | (None, 0xDC00..=0xDFFF) | (None, 0) => return Err(bad()),
            (None, 0xD800..=0xDBFF) => high = Some(code),
            (None, _) => out.push(char::from_u32(code).ok_or_else(bad)?),
        }
    }
    if high.is_some() {
        return Err(bad());
    }
    if out.is_empty() {
        return Err("zero-length delimited identifier".to_string());
    }
    Ok(out)
}

/// PostgreSQL reads `U&"…" [UESCAPE 'c']` as one identifier; sqlparser sees the word `U`, the
/// operator `&` and a quoted identifier. This merges the three (and the UESCAPE clause) back into
/// one decoded, quoted identifier, so the parser and the lookups see the name the server will.
fn unicode_identifiers(tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>, String> {
    let next_solid = |from: usize| {
        (from..tokens.len())
            .find(|&k| !matches!(tokens[k].token, Token::Whitespace(_)))
            .unwrap_or(tokens.len())
    };
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let u_amp = matches!(&tokens[i].token,
                Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("u"))
            && matches!(tokens.get(i + 1).map(|t| &t.token), Some(Token::Ampersand));
        let body = match tokens.get(i + 2).map(|t| &t.token) {
            Some(Token::Word(w)) if u_amp && w.quote_style == Some('"') => Some(w.value.clone()),
            _ => None,
        };
        let Some(body) = body else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        let mut end = i + 3;
        let mut esc = '\\';
        let k = next_solid(end);
        if matches!(&tokens.get(k).map(|t| &t.token), Some(Token::Word(w)) if w.keyword == Keyword::UESCAPE)
        {
            let lit = next_solid(k + 1);
            let mut cs = match tokens.get(lit).map(|t| &t.token) {
                Some(Token::SingleQuotedString(c)) => c.chars(),
                _ => return Err("UESCAPE must be followed by a one-character string".into()),
            };
            esc = match (cs.next(), cs.next()) {
                (Some(c), None)
                    if !(c.is_ascii_hexdigit()
                        || c.is_whitespace()
                        || matches!(c, '+' | '\'' | '"')) =>
                {
                    c
                }
                _ => return Err("invalid Unicode escape character after UESCAPE".into()),
            };
            end = lit + 1;
        }
        out.push(TokenWithSpan {
            token: Token::Word(Word {
                value: unicode_unescape(&body, esc)?,
                quote_style: Some('"'),
                keyword: Keyword::NoKeyword,
            }),
            span: tokens[i].span.union(&tokens[end - 1].span),
        });
        i = end;
    }
    Ok(out)
}

fn parse(sql: &str, flavor: Flavor) -> Result<Vec<Statement>, String> {
    match flavor {
        Flavor::Sqlite => Parser::parse_sql(&SQLiteDialect {}, sql).map_err(|e| e.to_string()),
        Flavor::Postgres => {
            let dialect = PostgreSqlDialect {};
            let tokens = Tokenizer::new(&dialect, sql)
                .tokenize_with_location()
                .map_err(|e| e.to_string())?;
            Parser::new(&dialect)
                .with_tokens_with_locations(unicode_identifiers(tokens)?)
                .parse_statements()
                .map_err(|e| e.to_string())
        }
    }
}

/// `OPERATOR(schema.op)` anywhere in the text (`ORDER BY … USING OPERATOR(public.<)` as well as
/// in expressions) with a schema other than `pg_catalog`: a user-defined operator runs whatever
/// function it is bound to. Found on the tokens, so no place in the grammar is missed.
fn foreign_operator(tokens: &[TokenWithSpan]) -> Option<String> {
    let words: Vec<&Token> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    for (i, t) in words.iter().enumerate() {
        if let Token::Word(w) = t
            && w.keyword == Keyword::OPERATOR
            && matches!(words.get(i + 1), Some(Token::LParen))
            && let (Some(Token::Word(schema)), Some(Token::Period)) =
                (words.get(i + 2), words.get(i + 3))
        {
            let name = if schema.quote_style.is_some() {
                schema.value.clone()
            } else {
                schema.value.to_ascii_lowercase()
            };
            if name != "pg_catalog" {
                return Some(format!("{name}.…"));
            }
        }
    }
    None
}

/// Classifies `sql` (exactly one statement expected).
pub fn classify(sql: &str, flavor: Flavor) -> Verdict {
    let dangerous = |reason: String, problem| Verdict {
        class: Class::Dangerous,
        reason,
        returning: false,
        query: false,
        problem: Some(problem),
    };
    match parse(sql, flavor) {
        Err(e) => dangerous(
            format!("the statement could not be classified ({e})"),
            Problem::Unparsed(e.to_string()),
        ),
        Ok(stmts) if stmts.len() != 1 => dangerous(
            format!(
                "exactly one statement per call is allowed (found {})",
                stmts.len()
            ),
            Problem::Several(stmts.len()),
        ),
        Ok(stmts) => {
            let v = statement(&stmts[0]);
            if v.class == Class::Dangerous {
                return v;
            }
            if flavor == Flavor::Postgres
                && let Ok(tokens) =
                    Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location()
                && let Some(op) = foreign_operator(&tokens)
            {
                return Verdict {
                    class: Class::Dangerous,
                    reason: format!("it names OPERATOR({op}), which is not a built-in operator"),
                    ..statement(&stmts[0])
                };
            }
            if flavor == Flavor::Postgres
                && let Some(f) = explain_amplifier(&stmts[0])
            {
                let mut v = statement(&stmts[0]);
                v.problem = Some(Problem::Amplifies(f));
                return v;
            }
            let mut aliases = FnAliases(HashMap::new());
            if flavor == Flavor::Postgres {
                let _ = stmts[0].visit(&mut aliases);
            }
            match stmts[0].visit(&mut Check {
                flavor,
                fn_aliases: aliases.0,
            }) {
                ControlFlow::Break(reason) => Verdict {
                    class: Class::Dangerous,
                    reason,
                    ..v
                },
                ControlFlow::Continue(()) => v,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(sql: &str) -> Class {
        classify(sql, Flavor::Postgres).class
    }

    #[test]
    fn user_operators_are_dangerous_wherever_they_are_named() {
        assert_eq!(
            c("SELECT a FROM t ORDER BY 1 USING OPERATOR(public.<)"),
            Class::Dangerous
        );
        assert_eq!(c("SELECT 1 OPERATOR(myschema.+) 2"), Class::Dangerous);
        assert_ne!(c("SELECT 1 OPERATOR(pg_catalog.+) 2"), Class::Dangerous);
    }

    #[test]
    fn explain_of_values_that_grow_in_the_plan_is_flagged() {
        for sql in [
            "EXPLAIN VERBOSE SELECT repeat('x', 400000000)",
            "EXPLAIN VERBOSE SELECT 'x'::char(10485760)",
            "EXPLAIN SELECT * FROM t WHERE a = CAST('x' AS varchar(9999999))",
        ] {
            assert!(
                matches!(
                    classify(sql, Flavor::Postgres).problem,
                    Some(Problem::Amplifies(_))
                ),
                "{sql}"
            );
        }
        assert!(
            classify("EXPLAIN SELECT a::varchar(20) FROM t", Flavor::Postgres)
                .problem
                .is_none()
        );
    }

    #[test]
    fn a_field_of_a_function_in_from_is_a_call() {
        for sql in [
            "SELECT t.pg_read_file FROM unnest(ARRAY['/etc/passwd']) AS t",
            "SELECT t.pg_ls_dir FROM unnest(ARRAY['/']) t",
            "SELECT t.lo_import FROM unnest(ARRAY['/etc/hostname']) t",
            "SELECT t.pg_terminate_backend FROM unnest(ARRAY[1]) AS t",
            "SELECT g.pg_read_file FROM generate_series(1, 2) AS g(n)",
            "SELECT unnest.pg_read_file FROM unnest(ARRAY['x'])",
            "SELECT t.pg_read_file FROM unnest(ARRAY['/etc/hostname']) t UNION ALL SELECT 'x' FROM unnest(ARRAY['a']) t(pg_read_file)",
            "SELECT pg_read_file.pg_read_file FROM unnest(ARRAY['/etc/hostname']) AS pg_read_file(x)",
            "SELECT lo_import.lo_import FROM unnest(ARRAY['/etc/hostname']) AS lo_import(x)",
            "INSERT INTO rv_t SELECT t.nextval::text FROM unnest(ARRAY['rv_seq'::regclass]) AS t RETURNING a",
        ] {
            assert_eq!(c(sql), Class::Dangerous, "{sql}");
        }
        for sql in [
            "SELECT t.x FROM unnest(ARRAY[1]) AS t(x)",
            "SELECT t.t FROM unnest(ARRAY[1]) t",
            "SELECT g.g FROM generate_series(1, 3) g",
            "SELECT t.a, u.b FROM items t JOIN other u ON t.id = u.id",
            "SELECT t.upper FROM unnest(ARRAY['a']) t",
            "SELECT t.x FROM unnest(ARRAY[1]) t(x) UNION ALL SELECT u.x FROM unnest(ARRAY[2]) u(x)",
        ] {
            let v = classify(sql, Flavor::Postgres);
            assert!(v.class != Class::Dangerous, "{sql}: {}", v.reason);
        }
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

    fn why(sql: &str) -> String {
        classify(sql, Flavor::Postgres).reason
    }

    #[test]
    fn lists_are_sorted_and_unique() {
        for list in [PG_ALLOWED_FUNCTIONS, PG_KEYWORD_CALLS] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{:?}", list);
            assert!(list.iter().all(|f| {
                !f.is_empty()
                    && f.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            }));
        }
    }

    #[test]
    fn functions_off_the_list_are_dangerous() {
        for sql in [
            r#"SELECT U&"\0070g_read_file"('/etc/passwd')"#,
            r#"SELECT u&"\+000070g_read_file"('/etc/passwd')"#,
            r#"SELECT U&"!0070g_read_file" UESCAPE '!' ('/etc/passwd')"#,
            r#"SELECT U&"!0070g_read_file" UESCAPE /* c */ '!'('/etc/passwd')"#,
            "SELECT query_to_xml('select pg_read_file(''/etc/passwd'')', true, false, '')",
            "SELECT query_to_xml_and_xmlschema('select 1', true, false, '')",
            "SELECT query_to_xmlschema('select 1', true, false, '')",
            "SELECT cursor_to_xml('c', 1, true, false, '')",
            "SELECT table_to_xml('t', true, false, '')",
            "SELECT schema_to_xml('public', true, false, '')",
            "SELECT database_to_xml(true, false, '')",
            "SELECT ts_stat('select 1')",
            "SELECT ts_rewrite('a'::tsquery, 'select 1')",
            "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)",
            "SELECT dblink_exec('host=x', 'drop table t')",
            "SELECT pg_read_file('x')",
            "SELECT pg_catalog.pg_read_file('x')",
            r#"SELECT "pg_catalog"."pg_read_file"('x')"#,
            r#"SELECT "PG_READ_FILE"('x')"#,
            "SELECT PG_READ_FILE('x')",
            "SELECT pg_read_binary_file('x')",
            "SELECT pg_stat_file('x')",
            "SELECT * FROM pg_ls_dir('.')",
            "SELECT * FROM pg_ls_waldir()",
            "SELECT * FROM pg_catalog.pg_ls_logdir()",
            "SELECT * FROM t, LATERAL pg_ls_dir(t.path) d",
            "SELECT * FROM generate_series(1, 2) g, LATERAL (SELECT pg_read_file('x')) r",
            // sqlparser 0.64 does not parse ROWS FROM: unclassifiable, so Dangerous whatever it calls
            "SELECT * FROM ROWS FROM (pg_ls_dir('.'))",
            "SELECT * FROM ROWS FROM (generate_series(1, 3), unnest(ARRAY[1]))",
            "SELECT lo_import('/etc/passwd')",
            "SELECT lo_export(1, '/tmp/x')",
            "SELECT lo_get(1)",
            "SELECT pg_notify('a', 'b')",
            "SELECT set_config('search_path', 'x', false)",
            "SELECT pg_terminate_backend(1)",
            "SELECT pg_cancel_backend(1)",
            "SELECT pg_reload_conf()",
            "SELECT pg_create_logical_replication_slot('s','pgoutput')",
            "SELECT pg_create_physical_replication_slot('s')",
            "SELECT pg_drop_replication_slot('s')",
            "SELECT * FROM pg_logical_slot_get_changes('s', NULL, NULL)",
            "SELECT pg_replication_origin_create('o')",
            "SELECT pg_backup_start('b')",
            "SELECT pg_start_backup('b')",
            "SELECT pg_backup_stop()",
            "SELECT pg_stop_backup()",
            "SELECT pg_stat_reset()",
            "SELECT pg_stat_reset_shared('wal')",
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_try_advisory_xact_lock(1)",
            "SELECT nextval('s')",
            "SELECT setval('s', 1)",
            "SELECT currval('s')",
            "SELECT txid_current()",
            "SELECT myschema.f(1)",
            "SELECT public.upper('x')",
            "SELECT db.pg_catalog.upper('x')",
            "SELECT my_function(1)",
            r#"SELECT "coalesce"(a, 0) FROM t"#,
            r#"SELECT "current_date"()"#,
            "SELECT pg_catalog.coalesce(a, 0) FROM t",
            "SELECT 1 OPERATOR(myschema.+) 2",
            "SELECT 1 WHERE 1 OPERATOR(\"PG_CATALOG\".=) 1",
            // the function check holds for data changes too
            "INSERT INTO t VALUES (pg_read_file('x'))",
            "UPDATE t SET a = nextval('s')",
            "DELETE FROM t WHERE a IN (SELECT lo_unlink(1))",
            "EXPLAIN SELECT pg_read_file('x')",
            // every place an expression or a table function can hide
            "SELECT DISTINCT ON (pg_read_file('x')) a FROM t",
            "SELECT a FROM t ORDER BY pg_read_file('x')",
            "SELECT a FROM t GROUP BY a HAVING max(pg_read_file('x')) > ''",
            "SELECT a FROM t LIMIT length(pg_read_file('x'))",
            "SELECT a FROM t OFFSET length(pg_read_file('x'))",
            "SELECT rank() OVER (PARTITION BY pg_read_file('x')) FROM t",
            "SELECT CASE WHEN a THEN pg_read_file('x') END FROM t",
            "SELECT * FROM t JOIN u ON u.a = pg_read_file('x')",
            "SELECT * FROM t WHERE a IN (SELECT pg_read_file('x'))",
            "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM pg_ls_dir('.'))",
            "SELECT ARRAY[pg_read_file('x')]",
            "SELECT pg_read_file('x')::text",
            "SELECT (pg_read_file('x'))",
            "VALUES (pg_read_file('x'))",
            "SELECT 1 UNION SELECT length(pg_read_file('x'))",
            "SELECT count(*) FILTER (WHERE pg_read_file('x') > '') FROM t",
            "SELECT * FROM (SELECT 1) s, LATERAL pg_ls_dir('.') AS d",
            "SELECT * FROM \"pg_ls_dir\"('.')",
            "INSERT INTO t VALUES (1) RETURNING pg_read_file('x')",
            "INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = pg_read_file('x')",
            "UPDATE t SET a = 1 FROM pg_ls_dir('.') d",
            "DELETE FROM t USING pg_ls_dir('.') d WHERE t.a = d",
            "MERGE INTO t USING pg_ls_dir('.') d ON t.a = d WHEN MATCHED THEN DELETE",
            // attribute notation: `(v).f` is `f(v)` unless `v` has a field `f`
            "SELECT ('/etc/passwd').pg_read_file",
            "SELECT ('/etc/passwd'::text).PG_READ_FILE",
            "SELECT (x).pg_read_file FROM (SELECT '/etc/passwd'::text AS x) s",
            "SELECT (s.x).pg_read_file FROM (SELECT '/etc/passwd'::text AS x) s",
            "SELECT s.x[1].pg_read_file FROM (SELECT ARRAY['/etc/passwd'] AS x) s",
            "SELECT x[1].pg_read_file FROM (SELECT ARRAY['/etc/passwd'] AS x) s",
            "SELECT (ARRAY['/etc/passwd'])[1].pg_read_file",
            "SELECT $1.pg_read_file",
            "SELECT ('pg_wal').pg_ls_dir",
            "SELECT (1).pg_terminate_backend",
            "SELECT (x).my_function FROM t",
            "SELECT (jsonb_each(j)).key FROM t",
            "WITH x AS (SELECT pg_read_file('x')) SELECT * FROM x",
        ] {
            assert_eq!(c(sql), Class::Dangerous, "{sql}");
            // for the right reason: the parser read it, and the check found the call
            assert!(
                sql.contains("ROWS FROM") || !why(sql).contains("could not be classified"),
                "{sql}: {}",
                why(sql)
            );
        }
        assert_eq!(
            why(r#"SELECT U&"\0070g_read_file"('/etc/passwd')"#),
            "it calls pg_read_file(), which is not on the list of functions a Safe statement may call"
        );
        assert!(why(r#"SELECT "PG_READ_FILE"('x')"#).contains(r#""PG_READ_FILE"()"#));
        assert!(why("SELECT myschema.f(1)").contains("myschema.f()"));
        assert!(why("SELECT * FROM pg_ls_dir('.')").contains("pg_ls_dir()"));
        assert!(why("SELECT ('/etc/passwd').pg_read_file").contains(".pg_read_file"));
    }

    #[test]
    fn unicode_identifiers_are_decoded() {
        // decoded to an allowed name: Safe, like the plain spelling
        assert_eq!(c(r#"SELECT U&"\0075pper"('x')"#), Class::Safe);
        assert_eq!(c(r#"SELECT U&"d\0061t\+000061" FROM t"#), Class::Safe);
        assert_eq!(c(r#"SELECT * FROM U&"t\0061ble""#), Class::Safe);
        // decoded name, verbatim (quoted): `UPPER` is not `upper`
        assert_eq!(c(r#"SELECT U&"\0055PPER"('x')"#), Class::Dangerous);
        // `U & "x"` with spaces is the operator `&`, not an escape
        assert_eq!(c(r#"SELECT u & "x" FROM t"#), Class::Safe);
        // malformed escapes, bad UESCAPE: not classifiable, so Dangerous
        for sql in [
            r#"SELECT U&"\00zz" FROM t"#,
            r#"SELECT U&"\0000" FROM t"#,
            r#"SELECT U&"\D800" FROM t"#,
            r#"SELECT U&"\DC00" FROM t"#,
            r#"SELECT U&"\+110000" FROM t"#,
            r#"SELECT U&"x" UESCAPE 'a' FROM t"#,
            r#"SELECT U&"x" UESCAPE '!!' FROM t"#,
            r#"SELECT U&"x" UESCAPE FROM t"#,
            r#"SELECT U&"" FROM t"#,
        ] {
            assert_eq!(c(sql), Class::Dangerous, "{sql}");
            assert!(why(sql).contains("could not be classified"), "{sql}");
        }
        assert_eq!(unicode_unescape(r"\D83D\DE00", '\\').unwrap(), "\u{1F600}");
        assert_eq!(unicode_unescape(r"a\\b", '\\').unwrap(), r"a\b");
        assert_eq!(unicode_unescape("!0041!!", '!').unwrap(), "A!");
    }

    #[test]
    fn catalog_writes_are_dangerous() {
        for sql in [
            "UPDATE pg_catalog.pg_authid SET rolsuper = true",
            r#"UPDATE "pg_catalog"."pg_authid" SET rolsuper = true"#,
            "UPDATE PG_CATALOG.pg_authid SET rolsuper = true",
            r#"UPDATE U&"pg_c\0061talog".pg_authid SET rolsuper = true"#,
            "UPDATE pg_authid SET rolsuper = true",
            "DELETE FROM pg_authid",
            "DELETE FROM pg_catalog.pg_proc WHERE proname = 'x'",
            "INSERT INTO information_schema.x VALUES (1)",
            "INSERT INTO INFORMATION_SCHEMA.x VALUES (1)",
            "INSERT INTO pg_toast.pg_toast_1 VALUES (1)",
            "MERGE INTO pg_catalog.pg_class c USING t ON c.oid = t.a WHEN MATCHED THEN DELETE",
            "WITH x AS (UPDATE pg_catalog.pg_authid SET rolsuper = true RETURNING 1) SELECT * FROM x",
            "WITH x AS (DELETE FROM pg_authid RETURNING 1) SELECT * FROM x",
            "EXPLAIN ANALYZE UPDATE pg_authid SET rolsuper = true",
        ] {
            assert_eq!(c(sql), Class::Dangerous, "{sql}");
            assert!(why(sql).contains("system catalog"), "{sql}");
        }
        // reading catalogs, and writing ordinary tables (also ones that only look similar)
        assert_eq!(c("SELECT * FROM pg_catalog.pg_class"), Class::Safe);
        assert_eq!(c("SELECT * FROM information_schema.tables"), Class::Safe);
        assert_eq!(
            c("UPDATE t SET a = 1 FROM pg_class WHERE t.b = pg_class.relname"),
            Class::Moderate
        );
        assert_eq!(c(r#"UPDATE "PG_AUTHID" SET a = 1"#), Class::Moderate);
        assert_eq!(c("INSERT INTO public.t VALUES (1)"), Class::Moderate);
    }

    #[test]
    fn ordinary_queries_stay_safe() {
        for sql in [
            "SELECT now()",
            "SELECT CURRENT_TIMESTAMP",
            "SELECT current_timestamp(3), current_date, localtime, localtimestamp, current_time",
            "SELECT current_user, session_user, user, current_role, current_schema, current_catalog",
            "SELECT current_database(), version(), current_setting('TimeZone')",
            "SELECT count(*) FROM t",
            "SELECT upper(name), coalesce(a, 0), date_trunc('day', created_at) FROM t",
            "SELECT UPPER(name), COALESCE(a, 0), NULLIF(a, 1), GREATEST(a, 1), LEAST(a, 2) FROM t",
            "SELECT * FROM generate_series(1, 10)",
            "SELECT * FROM generate_series(1, 3) WITH ORDINALITY AS g(a, b)",
            "SELECT * FROM t, LATERAL generate_series(1, t.a) g",
            "SELECT * FROM unnest(ARRAY[1, 2]) AS u",
            "SELECT * FROM pg_catalog.generate_series(1, 3)",
            "SELECT jsonb_build_object('a', 1)",
            "SELECT j->>'a', j #> '{a,b}', jsonb_path_query(j, '$.a') FROM t",
            "SELECT pg_sleep(0.1)",
            "SELECT a::numeric(10,2) FROM t",
            "SELECT PG_CATALOG.upper('x')",
            "SELECT pg_catalog.upper('x'), \"pg_catalog\".\"upper\"('x'), \"upper\"('x')",
            "SELECT extract(year FROM created_at), EXTRACT(epoch FROM created_at) FROM t",
            "SELECT substring(name FROM 1 FOR 3), substring(name, 1, 3), trim(name) FROM t",
            "SELECT position('a' IN name), overlay(name PLACING 'x' FROM 1), ceil(a), floor(a) FROM t",
            "SELECT CAST(a AS text), a::regclass, date(created_at), to_char(created_at, 'YYYY') FROM t",
            "SELECT created_at AT TIME ZONE 'UTC', interval '1 day', DATE '2020-01-01' FROM t",
            "SELECT a.x, b.y FROM a JOIN b ON a.id = b.a_id LEFT JOIN c USING (id) WHERE a.z > 1",
            "SELECT b, sum(a), avg(a), min(a), max(a), array_agg(a ORDER BY a), string_agg(c, ',') \
             FROM t GROUP BY b HAVING count(*) > 1",
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM t",
            "SELECT count(*) FILTER (WHERE a > 1) FROM t",
            "SELECT row_number() OVER (PARTITION BY b ORDER BY a), lag(a) OVER w, \
             rank() OVER w FROM t WINDOW w AS (ORDER BY a)",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) \
             SELECT * FROM r",
            "SELECT b, count(*) FROM t GROUP BY ROLLUP (b)",
            "SELECT grouping(b), count(*) FROM t GROUP BY CUBE (b)",
            "SELECT CASE WHEN a > 1 THEN 'x' ELSE 'y' END FROM t",
            "SELECT EXISTS (SELECT 1 FROM t), ARRAY(SELECT a FROM t)",
            "SELECT ROW(1, 2)",
            "SELECT md5(name), length(name), lower(name), regexp_replace(name, 'a', 'b') FROM t",
            "SELECT to_tsvector('english', body) @@ websearch_to_tsquery('english', 'x') FROM t",
            "SELECT gen_random_uuid(), random(), round(a::numeric, 2), abs(a) FROM t",
            "SELECT pg_size_pretty(pg_total_relation_size('t'))",
            "SELECT pg_typeof(a), format_type(atttypid, atttypmod) FROM pg_attribute",
            "SELECT has_table_privilege('t', 'select'), obj_description('t'::regclass)",
            "SELECT 1 OPERATOR(pg_catalog.+) 2",
            "SELECT * FROM t WHERE a = ANY(ARRAY[1, 2]) AND name ILIKE '%x%'",
            "VALUES (1, 'a'), (2, 'b')",
            "SELECT 'pg_read_file(''x'')' AS not_a_call",
            "SELECT pg_read_file FROM t",
            "SELECT t.pg_read_file, s.t.a, t.arr[1], t.arr[1:2], (t.arr)[1] FROM s.t",
            "SELECT ('abc'::text).length, (x).upper FROM t",
            "SELECT j->'a', j->>'b', (j->'a')->>'c' FROM t",
            "SHOW search_path",
            // the metadata tool's queries
            "SELECT table_schema, table_name, table_type FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
             AND ($1::text IS NULL OR table_schema = $1) ORDER BY table_schema, table_name",
            "SELECT schemaname AS table_schema, indexname AS index_name, indexdef FROM pg_indexes \
             WHERE ($2::text IS NULL OR tablename = $2) ORDER BY schemaname, tablename, indexname",
        ] {
            assert_eq!(c(sql), Class::Safe, "{sql}: {}", why(sql));
        }
        for sql in [
            "INSERT INTO t (a, b) VALUES (1, now()) RETURNING id",
            "UPDATE t SET a = coalesce(a, 0) + 1, b = upper(b) WHERE id = $1",
            "DELETE FROM t WHERE created_at < now() - interval '1 day'",
            "INSERT INTO t SELECT * FROM generate_series(1, 3)",
        ] {
            assert_eq!(c(sql), Class::Moderate, "{sql}: {}", why(sql));
        }
    }

    #[test]
    fn sqlite_deny_list_is_normalised() {
        let s = |q| classify(q, Flavor::Sqlite).class;
        assert_eq!(s("SELECT load_extension('x')"), Class::Dangerous);
        assert_eq!(s("SELECT LOAD_EXTENSION('x')"), Class::Dangerous);
        // SQLite function names are case-insensitive, quoted or not
        assert_eq!(s(r#"SELECT "LOAD_EXTENSION"('x')"#), Class::Dangerous);
        assert_eq!(s("SELECT [load_extension]('x')"), Class::Dangerous);
        assert_eq!(s("SELECT `Load_Extension`('x')"), Class::Dangerous);
        assert_eq!(s("SELECT writefile('x', 'y')"), Class::Dangerous);
        assert_eq!(s("SELECT * FROM readfile('x')"), Class::Dangerous);
        // SQLite keeps its deny-list: functions unknown to PostgreSQL stay Safe there
        assert_eq!(
            s("SELECT upper(a), ifnull(b, 0), my_function(1) FROM t"),
            Class::Safe
        );
        assert_eq!(s("SELECT * FROM json_each('[1]')"), Class::Safe);
        assert_eq!(s("SELECT * FROM pragma_table_info('t')"), Class::Safe);
    }
}

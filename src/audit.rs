//! What goes into the audit log, and how it is kept small and free of secrets: argument
//! redaction (secret-like names at any depth, SQL literals and comments blanked by a real SQL
//! tokenizer, bound parameters dropped), truncation of long values and details, and the one
//! function every front door writes its audit rows through ([`record`]). Retention
//! (`audit.retain_days`, `audit.max_rows`) is applied by the store on each write and by the
//! reaper.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value, json};
use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use crate::auth::scopes::Scopes;
use crate::auth::{Principal, Via};
use crate::store::{Store, audit as rows};

/// Longest string value kept in stored arguments (longer ones are cut, their length noted).
pub const MAX_VALUE_CHARS: usize = 256;
/// Largest stored `arguments` JSON; past it only the names of the arguments are kept.
pub const MAX_ARGUMENTS_BYTES: usize = 4 * 1024;
/// Longest stored `detail`.
pub const MAX_DETAIL_CHARS: usize = 1024;

/// True for argument names whose values must never be stored or logged. Matched broadly, on the
/// name with `_`/`-` removed and lower-cased: anything that says password, secret, token,
/// credential, private, cookie, salt, signature, dsn or connection string, and any name ending
/// in `key` (apiKey, masterKey, privateKey — but not keyId or keyName).
pub fn is_secret_name(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | ' ' | '.'))
        .flat_map(char::to_lowercase)
        .collect();
    const PARTS: &[&str] = &[
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "credential",
        "private",
        "cookie",
        "salt",
        "signature",
        "connectionstring",
        "connstr",
        "authorization",
    ];
    PARTS.iter().any(|p| n.contains(p))
        || n.ends_with("key")
        || matches!(
            n.as_str(),
            "pwd" | "pass" | "pw" | "pin" | "otp" | "dsn" | "auth"
        )
}

/// A copy of `v` fit for the audit log: secret-named members replaced by `"[redacted]"`, SQL
/// parameters dropped, SQL text (`sql`, `query`, `up`, `down`) with its literals and comments
/// blanked, long strings cut, and the whole bounded to [`MAX_ARGUMENTS_BYTES`].
pub fn redact(v: &Value) -> Value {
    let r = redact_value(v);
    if r.to_string().len() <= MAX_ARGUMENTS_BYTES {
        return r;
    }
    let names: Vec<Value> = match v {
        Value::Object(m) => m.keys().take(50).map(|k| json!(k)).collect(),
        _ => vec![],
    };
    json!({"[truncated]": format!("arguments of {} bytes", v.to_string().len()), "names": names})
}

/// What the audit log keeps of a refused call's arguments: their names only (at most 50), so
/// calls a key may not make cannot fill the log with their payloads.
pub fn names_only(v: &Value) -> Value {
    let names: Vec<Value> = match v {
        Value::Object(m) => m.keys().take(50).map(|k| json!(cut_to(k, 64))).collect(),
        _ => vec![],
    };
    json!({"[refused: values not kept]": names})
}

fn redact_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if is_secret_name(k) {
                        json!("[redacted]")
                    } else if k == "parameters" {
                        json!(format!(
                            "[redacted: {} value(s)]",
                            v.as_array().map_or(1, Vec::len)
                        ))
                    } else if matches!(k.as_str(), "sql" | "query" | "up" | "down") && v.is_string()
                    {
                        json!(cut(&blank_literals(v.as_str().unwrap_or(""))))
                    } else {
                        redact_value(v)
                    };
                    (k.clone(), v)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact_value).collect()),
        Value::String(s) => json!(cut(s)),
        other => other.clone(),
    }
}

/// `s` cut to [`MAX_VALUE_CHARS`] characters, with the original length noted.
fn cut(s: &str) -> String {
    cut_to(s, MAX_VALUE_CHARS)
}

fn cut_to(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…[{} bytes in all]", &s[..i], s.len()),
    }
}

/// A tool's error text as the audit log keeps it: every quoted part blanked (`'…'`, `"…"`,
/// `` `…` `` — database errors quote the value they could not use, and that value may be a
/// secret: `invalid input syntax for type integer: "hunter2"`), then cut to
/// [`MAX_DETAIL_CHARS`]. The client saw the whole message; the log keeps its shape.
pub fn detail(msg: &str) -> String {
    // from the first quote of a kind to the last one of that kind: a quoted value may itself
    // contain the quote (PostgreSQL does not escape it), so nothing between them is kept
    let mut out = msg.to_string();
    for q in ['\'', '"', '`'] {
        if let (Some(first), Some(last)) = (out.find(q), out.rfind(q))
            && first < last
        {
            out = format!("{}{q}***{q}{}", &out[..first], &out[last + 1..]);
        }
    }
    cut_to(&out, MAX_DETAIL_CHARS)
}

/// SQL text with every string literal (`'…'`, `E'…'`, `$tag$…$tag$`, `U&'…'`, `X'…'`, …)
/// replaced by `'***'` and every comment emptied, decided by sqlparser's tokenizer, so quotes
/// inside comments, quoted identifiers (`"o'neil"`) and escape strings cannot shift what is
/// blanked. Double-quoted words are blanked too (SQLite reads `"…"` as a string when no column
/// has that name). Text that does not tokenize is not kept at all.
pub fn blank_literals(sql: &str) -> String {
    let pg = PostgreSqlDialect {};
    let lite = SQLiteDialect {};
    let dialects: [&dyn Dialect; 2] = [&pg, &lite];
    for d in dialects {
        if let Ok(tokens) = Tokenizer::new(d, sql).tokenize() {
            let mut out = String::with_capacity(sql.len());
            for t in tokens {
                match t {
                    Token::SingleQuotedString(_)
                    | Token::DoubleQuotedString(_)
                    | Token::TripleSingleQuotedString(_)
                    | Token::TripleDoubleQuotedString(_)
                    | Token::DollarQuotedString(_)
                    | Token::SingleQuotedByteStringLiteral(_)
                    | Token::DoubleQuotedByteStringLiteral(_)
                    | Token::TripleSingleQuotedByteStringLiteral(_)
                    | Token::TripleDoubleQuotedByteStringLiteral(_)
                    | Token::SingleQuotedRawStringLiteral(_)
                    | Token::DoubleQuotedRawStringLiteral(_)
                    | Token::TripleSingleQuotedRawStringLiteral(_)
                    | Token::TripleDoubleQuotedRawStringLiteral(_)
                    | Token::NationalStringLiteral(_)
                    | Token::QuoteDelimitedStringLiteral(_)
                    | Token::NationalQuoteDelimitedStringLiteral(_)
                    | Token::EscapedStringLiteral(_)
                    | Token::UnicodeStringLiteral(_)
                    | Token::HexStringLiteral(_)
                    | Token::CopyData { .. } => out.push_str("'***'"),
                    Token::Whitespace(Whitespace::SingleLineComment { prefix, .. }) => {
                        out.push_str(&prefix);
                        out.push('\n');
                    }
                    Token::Whitespace(Whitespace::MultiLineComment(_)) => out.push_str("/**/"),
                    // in SQLite a double-quoted word can be a string literal: blank it too
                    Token::Word(w) if w.quote_style == Some('"') => out.push_str("\"***\""),
                    other => out.push_str(&other.to_string()),
                }
            }
            return out;
        }
    }
    format!(
        "[SQL of {} bytes not shown: it does not tokenize]",
        sql.len()
    )
}

/// Who acts, and through which front door: the caller every domain operation takes
/// ([`crate::ops`]). Built by the MCP dispatcher from the request's principal
/// ([`Actor::of`]), by the CLI ([`Actor::cli`]) and by the web sign-in routes ([`Actor::web`]).
#[derive(Debug, Clone)]
pub struct Actor {
    /// The acting user; `None` for the machine's owner at the console.
    pub user_id: Option<String>,
    /// The API key the call came through.
    pub key_id: Option<String>,
    /// The web session the call came through.
    pub web_session: Option<String>,
    /// The key's scopes; `None` = unrestricted (also the CLI and web sessions).
    pub scopes: Option<Scopes>,
    /// `mcp`, `cli` or `web`.
    pub via: &'static str,
    /// The MCP server id the call came to (`trex`, `sqlite`, …), or `cli` / `web`.
    pub server: String,
    /// The client address, when known.
    pub remote: Option<String>,
    /// Set once an audit row has been written for this actor's call, so the dispatcher's
    /// fallback row (for calls that fail before reaching the domain) is never a second one.
    recorded: Arc<AtomicBool>,
}

impl Actor {
    /// The caller of an MCP request to server `server`.
    pub fn of(p: &Principal, server: &str) -> Actor {
        let (key_id, web_session) = match &p.via {
            Via::Key => (Some(p.key_id.clone()), None),
            Via::Web { session_id } => (None, Some(session_id.clone())),
        };
        Actor {
            user_id: Some(p.user_id.clone()),
            key_id,
            web_session,
            scopes: p.scopes.clone(),
            via: p.via.audit_name(),
            server: server.to_string(),
            remote: None,
            recorded: Default::default(),
        }
    }

    /// The person at the console (`trex user ban …`): the machine's owner, unrestricted.
    pub fn cli() -> Actor {
        Actor {
            user_id: None,
            key_id: None,
            web_session: None,
            scopes: None,
            via: "cli",
            server: "cli".into(),
            remote: std::env::var("USER")
                .ok()
                .map(|u| format!("local user {u}")),
            recorded: Default::default(),
        }
    }

    /// A browser at the web sign-in routes (`user` once known), from address `remote`.
    pub fn web(user_id: Option<String>, remote: Option<String>) -> Actor {
        Actor {
            user_id,
            key_id: None,
            web_session: None,
            scopes: None,
            via: "web",
            server: "web".into(),
            remote,
            recorded: Default::default(),
        }
    }

    /// The server itself (a scheduled task named `task`).
    pub fn system(task: &str) -> Actor {
        Actor {
            user_id: None,
            key_id: None,
            web_session: None,
            scopes: None,
            via: "cli",
            server: format!("system:{task}"),
            remote: None,
            recorded: Default::default(),
        }
    }

    /// The actor as a queued job keeps it, so work a call queued is done — and audited — as
    /// that caller when it runs, on this process or (after a crash) the next.
    pub fn to_json(&self) -> Value {
        json!({"userId": self.user_id, "keyId": self.key_id, "webSession": self.web_session,
            "scopes": self.scopes, "via": self.via, "server": self.server, "remote": self.remote})
    }

    /// The actor [`to_json`](Self::to_json) kept (an unreadable one acts as nobody in
    /// particular: no user, no key, `via` "cli", server "system:job").
    pub fn from_json(v: &Value) -> Actor {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Actor {
            user_id: s("userId"),
            key_id: s("keyId"),
            web_session: s("webSession"),
            scopes: v
                .get("scopes")
                .and_then(|x| serde_json::from_value(x.clone()).ok()),
            via: match v.get("via").and_then(Value::as_str) {
                Some("mcp") => "mcp",
                Some("web") => "web",
                _ => "cli",
            },
            server: s("server").unwrap_or_else(|| "system:job".into()),
            remote: s("remote"),
            recorded: Default::default(),
        }
    }

    /// Says this call's audit row is written by the job it queued (when the job ends, with its
    /// outcome), so the dispatcher's fallback row is not written now.
    pub fn recorded_by_job(&self) {
        self.recorded.store(true, Ordering::Release);
    }

    /// True once an audit row was written through this actor (or a clone of it).
    pub fn recorded(&self) -> bool {
        self.recorded.load(Ordering::Acquire)
    }
}

/// One audited action.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// The operation: the MCP tool name whichever front door called it (`user-ban` from the
    /// CLI too), or the web route (`login`, `logout`).
    pub action: &'a str,
    /// Its arguments, unredacted (redacted here).
    pub arguments: &'a Value,
    /// `ok`, `error` or `refused`.
    pub outcome: &'static str,
    /// The error text, if any (cut here).
    pub detail: Option<&'a str>,
}

/// The row of `event`: arguments redacted, detail cut.
fn row(actor: &Actor, event: &Event<'_>) -> rows::AuditEntry {
    rows::AuditEntry {
        user_id: actor.user_id.clone(),
        key_id: actor.key_id.clone(),
        via: actor.via,
        remote: actor.remote.clone(),
        server: actor.server.clone(),
        tool: event.action.to_string(),
        arguments: redact(event.arguments).to_string(),
        outcome: event.outcome,
        detail: event.detail.map(detail),
    }
}

/// Writes one audit row (failures are logged, never fail the operation).
pub async fn record(
    store: &Store,
    retention: crate::config::AuditConfig,
    actor: &Actor,
    event: Event<'_>,
) {
    actor.recorded.store(true, Ordering::Release);
    let entry = row(actor, &event);
    if let Err(e) = store
        .run(move |c| rows::insert(c, &entry, retention.max_rows))
        .await
    {
        tracing::error!("cannot write audit row: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_literals_comments_and_parameters_are_blanked() {
        assert_eq!(
            blank_literals("ALTER ROLE x PASSWORD 'hunter''2' VALID UNTIL 'now'"),
            "ALTER ROLE x PASSWORD '***' VALID UNTIL '***'"
        );
        assert_eq!(blank_literals("SELECT $1, $$secret$$"), "SELECT $1, '***'");
        // the review's cases: a quote in an identifier, in a comment, in an escape string
        let b = blank_literals(r#"ALTER ROLE "o'neil" PASSWORD 'x1secret'"#);
        assert!(
            !b.contains("x1secret") && b.contains("PASSWORD '***'"),
            "{b}"
        );
        let b = blank_literals(r#"SELECT "sq1secret" FROM sqlite_master"#);
        assert!(!b.contains("sq1secret"), "{b}");
        assert_eq!(
            detail(r#"invalid input syntax for type integer: "pg1secret""#),
            r#"invalid input syntax for type integer: "***""#
        );
        assert!(!detail("syntax error at or near \"'pg2secret'\"").contains("pg2secret"));
        assert!(
            !detail(r#"invalid input syntax for type integer: "x"hunter2secret""#)
                .contains("hunter2")
        );
        let b = blank_literals("SELECT 1 /* it's */, 'p4ss' -- don't\n, E'a\\'b s3cr3t'");
        assert!(!b.contains("p4ss") && !b.contains("s3cr3t"), "{b}");
        let b = blank_literals("SELECT 'unterminated s3cret");
        assert!(!b.contains("s3cret"), "{b}");
        let r = redact(&json!({"sql": "SELECT 'x'", "parameters": ["pw", 2]}));
        assert_eq!(r["sql"], "SELECT '***'");
        assert_eq!(r["parameters"], "[redacted: 2 value(s)]");
    }

    #[test]
    fn secret_names_are_matched_broadly_at_any_depth() {
        for n in [
            "password",
            "passwd",
            "pwd",
            "db_password",
            "clientSecret",
            "credential",
            "privateKey",
            "api_key",
            "apiKey",
            "masterKey",
            "accessToken",
            "connection_string",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in ["keyId", "keyName", "name", "email", "userId", "description"] {
            assert!(!is_secret_name(n), "{n}");
        }
        let v =
            json!({"name": "a", "password": 1234, "nested": [{"clientSecret": "s", "keyId": "k"}]});
        let r = redact(&v);
        assert_eq!(r["password"], "[redacted]");
        assert_eq!(r["nested"][0]["clientSecret"], "[redacted]");
        assert_eq!(r["nested"][0]["keyId"], "k");
        assert_eq!(r["name"], "a");
    }

    #[test]
    fn stored_arguments_are_bounded() {
        let big = "x".repeat(4 * 1024 * 1024);
        let r = redact(&json!({"name": big}));
        assert!(r.to_string().len() < 1024, "{}", r.to_string().len());
        let many: Map<String, Value> = (0..500)
            .map(|i| (format!("f{i}"), json!("y".repeat(400))))
            .collect();
        let r = redact(&Value::Object(many));
        assert!(r.to_string().len() <= MAX_ARGUMENTS_BYTES + 8 * 1024);
    }
}

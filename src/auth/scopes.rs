//! API-key scopes: limits a key may carry. `readOnly` lets a key list and call only tools whose
//! `readOnlyHint` is true (and the SQL tools, which then run reads only); `tools` is an
//! allow-list of tool-name globs (`*`, `?`), each optionally qualified by the server it applies
//! to (`trex:user-*`, `sqlite:*`; see [`crate::servers`]); `endpoints` is an allow-list of
//! database ids. A key without scopes is unrestricted. Scopes are enforced in `tools/list`
//! (hidden) and `tools/call` (refused and audited).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Limits of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scopes {
    /// Only read-only tools.
    #[serde(default)]
    pub read_only: bool,
    /// Tool-name globs the key may use (e.g. `["user-*", "api-key-list"]`); absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Database ids the key may reach through the endpoint servers; absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    /// Allow Dangerous SQL (DDL, ATTACH, PRAGMA writes, transaction control, ...) in
    /// `trexdb-execute-sql` and the endpoint query tools. Off unless given, even for keys
    /// without other scopes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dangerous_sql: bool,
}

/// The refusal for a database outside a key's `endpoints` scope, with the way to a key that has it.
pub fn database_refusal(id: &str) -> String {
    format!(
        "This API key's scopes do not allow database '{id}' (scope `endpoints`); a key that may: \
         `trex api-key create --user <admin email> --name <name> --endpoint {id}` or api-key-create with \
         {{\"scopes\": {{\"endpoints\": [\"{id}\"]}}}}"
    )
}

/// Matches `name` against a glob of `*` (any run) and `?` (one character), in time linear in the
/// product of the lengths (no exponential backtracking on patterns like `*?*?*?…`).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

impl Scopes {
    /// Checks the scopes; messages name the field.
    pub fn validate(&self) -> Result<()> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.*?".contains(c))
        };
        // a tool glob may name its server: `server:glob`
        let tool_ok = |s: &str| match s.split_once(':') {
            Some((server, g)) => {
                !server.is_empty()
                    && server
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && ok(g)
            }
            None => ok(s),
        };
        if let Some(t) = &self.tools {
            if t.is_empty() {
                return Err(Error::Invalid(
                    "`scopes.tools` must not be empty (omit it to allow every tool)".into(),
                ));
            }
            if let Some(bad) = t.iter().find(|p| !tool_ok(p)) {
                return Err(Error::Invalid(format!(
                    "`scopes.tools` has an invalid pattern: {bad:?}"
                )));
            }
        }
        if let Some(e) = &self.endpoints {
            if e.is_empty() {
                return Err(Error::Invalid(
                    "`scopes.endpoints` must not be empty (omit it to allow every database)".into(),
                ));
            }
            if let Some(bad) = e.iter().find(|p| !ok(p) || p.contains(['*', '?'])) {
                return Err(Error::Invalid(format!(
                    "`scopes.endpoints` has an invalid database id: {bad:?}"
                )));
            }
        }
        Ok(())
    }

    /// True when `pattern` (`glob` or `server:glob`) matches tool `name` of server `server`.
    pub fn glob_matches(pattern: &str, server: &str, name: &str) -> bool {
        match pattern.split_once(':') {
            Some((s, g)) => s == server && glob(g, name),
            None => glob(pattern, name),
        }
    }

    /// True when tool `name` of server `server` (with its read-only-ness) is within the scopes.
    pub fn allows_tool(&self, server: &str, name: &str, read_only: bool) -> bool {
        (!self.read_only || read_only)
            && self
                .tools
                .as_ref()
                .is_none_or(|t| t.iter().any(|p| Scopes::glob_matches(p, server, name)))
    }

    /// Checks that a new key's scopes (`new`, `None` = unrestricted) grant nothing the creating
    /// key's scopes (`caller`) lack, so a scoped key cannot mint itself a wider one.
    pub fn check_within(new: Option<&Scopes>, caller: Option<&Scopes>) -> Result<()> {
        let Some(c) = caller else {
            return Ok(());
        };
        let deny = |why: &str| {
            Err(Error::Invalid(format!(
                "`scopes` {why}: a key cannot create a key with wider scopes than its own"
            )))
        };
        let Some(n) = new else {
            return deny("are missing (unrestricted)");
        };
        if c.read_only && !n.read_only {
            return deny("lack readOnly");
        }
        if let Some(ct) = &c.tools {
            match &n.tools {
                Some(nt) if nt.iter().all(|g| ct.contains(g)) => {}
                _ => return deny("allow tools outside this key's `tools` list"),
            }
        }
        if let Some(ce) = &c.endpoints {
            match &n.endpoints {
                Some(ne) if ne.iter().all(|e| ce.contains(e)) => {}
                _ => return deny("allow databases outside this key's `endpoints` list"),
            }
        }
        if n.dangerous_sql && !c.dangerous_sql {
            return deny("add dangerousSql");
        }
        Ok(())
    }

    /// True when a key with these scopes (or none) may run Dangerous SQL.
    pub fn dangerous_sql_allowed(s: Option<&Scopes>) -> bool {
        s.is_some_and(|s| s.dangerous_sql)
    }

    /// True when the database `id` is within the scopes.
    pub fn allows_endpoint(&self, id: &str) -> bool {
        self.endpoints
            .as_ref()
            .is_none_or(|e| e.iter().any(|x| x == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_is_fast_on_pathological_patterns() {
        let p = format!("{}Z", "*?".repeat(60));
        assert!(!glob(&p, &"a".repeat(128)));
    }

    #[test]
    fn new_keys_stay_within_the_callers_scopes() {
        let c = Scopes {
            tools: Some(vec!["api-key-create".into(), "user-*".into()]),
            ..Default::default()
        };
        assert!(Scopes::check_within(None, Some(&c)).is_err());
        assert!(
            Scopes::check_within(
                Some(&Scopes {
                    dangerous_sql: true,
                    ..c.clone()
                }),
                Some(&c)
            )
            .is_err()
        );
        assert!(
            Scopes::check_within(
                Some(&Scopes {
                    tools: Some(vec!["*".into()]),
                    ..Default::default()
                }),
                Some(&c)
            )
            .is_err()
        );
        assert!(
            Scopes::check_within(
                Some(&Scopes {
                    tools: Some(vec!["user-*".into()]),
                    ..Default::default()
                }),
                Some(&c)
            )
            .is_ok()
        );
        assert!(
            Scopes::check_within(
                Some(&Scopes {
                    dangerous_sql: true,
                    ..Default::default()
                }),
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn globs() {
        assert!(glob("user-*", "user-list"));
        assert!(glob("*", "anything"));
        assert!(glob("api-key-???t", "api-key-list"));
        assert!(!glob("user-*", "role-list"));
        assert!(!glob("user-list", "user-lists"));
    }

    #[test]
    fn scope_rules() {
        let s = Scopes {
            read_only: true,
            tools: Some(vec!["user-*".into()]),
            ..Default::default()
        };
        assert!(s.allows_tool("trex", "user-list", true));
        assert!(!s.allows_tool("trex", "user-create", false));
        assert!(!s.allows_tool("trex", "role-list", true));
        assert!(Scopes::default().allows_tool("trex", "anything", false));
        let q = Scopes {
            tools: Some(vec!["sqlite:*".into(), "trex:user-list".into()]),
            ..Default::default()
        };
        assert!(q.validate().is_ok());
        assert!(q.allows_tool("sqlite", "execute_sqlite_query", false));
        assert!(!q.allows_tool("postgres", "execute_postgres_query", false));
        assert!(q.allows_tool("trex", "user-list", true));
        assert!(!q.allows_tool("postgres", "user-list", true));
        assert!(
            Scopes {
                tools: Some(vec![]),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Scopes {
                tools: Some(vec!["bad name".into()]),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}

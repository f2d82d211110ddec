//! Plugins: the package format and what is checked before a plugin is kept. A plugin is a
//! directory or an `npm pack` tarball (`.tgz` / `.tar.gz`) whose `package.json` carries a `trex`
//! key declaring any of `migrations` (versioned `V<n>__<name>.sql` files for the plugin's own
//! `plugin.db` or a registered database), `ui` (a static directory served at
//! `/plugins/<name>/`), `functions` (executables run with a JSON request on stdin, see
//! [`functions`]) and `tools` (MCP tools of the admin server, each served by a function).
//!
//! This module owns the format: [`archive`] unpacks and copies with every entry checked,
//! [`read_package`] parses and checks a package, [`normalise`] resolves a request path before the
//! `/plugins/` allow-list is applied. Installing, removing and calling them — the rules, the
//! store rows and the audit — is [`crate::ops::plugins`]'s.

pub mod archive;
pub mod functions;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use crate::error::{Error, Result};

/// The development guide served as `trex://plugin-development-guide`.
pub const GUIDE: &str = include_str!("guide.md");

/// Where plugins live: `<data_dir>/plugins`.
pub fn root(config: &Config) -> PathBuf {
    config.store.data_dir.join("plugins")
}

/// A plugin's directory: `<data_dir>/plugins/<name>`, holding `package/` and `plugin.db`.
pub fn dir_of(config: &Config, name: &str) -> PathBuf {
    root(config).join(name)
}

/// The package files of an installed plugin.
pub fn package_dir(config: &Config, name: &str) -> PathBuf {
    dir_of(config, name).join("package")
}

/// The plugin's own SQLite database (the default migrations target).
pub fn database_of(config: &Config, name: &str) -> PathBuf {
    dir_of(config, name).join("plugin.db")
}

/// Names a plugin may not take: the admin server's tool groups (a plugin's tools are named
/// `<plugin>-<tool>`, so `user` would make `user-…` tools) and reserved words.
const RESERVED: &[&str] = &[
    "api",
    "api-key",
    "app",
    "audit",
    "backup",
    "cluster",
    "core",
    "database",
    "etl",
    "fn",
    "migration",
    "plugin",
    "role",
    "session",
    "sso",
    "trex",
    "trexdb",
    "user",
];

fn word_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The short name of a package name (`@scope/hello` → `hello`), checked: lower-case letters,
/// digits, `-` and `_`, at most 40 characters, not a reserved word.
pub fn short_name(package: &str) -> std::result::Result<String, String> {
    let short = match package.strip_prefix('@') {
        Some(scoped) => match scoped.split_once('/') {
            Some((scope, name)) if word_ok(scope, 214) => name,
            _ => return Err(format!("{package:?} is not a valid scoped package name")),
        },
        None => package,
    };
    if !word_ok(short, 40) {
        return Err(format!(
            "{package:?}: the plugin name must be 1–40 lower-case letters, digits, `-` or `_`, starting with a letter or digit"
        ));
    }
    if RESERVED.contains(&short) {
        return Err(format!(
            "{short:?} is reserved (the admin server's tool groups and trex's own names cannot be plugin names)"
        ));
    }
    Ok(short.to_string())
}

/// `trex.migrations`: a directory, or `{"dir", "database"}` to target a registered database.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Migrations {
    /// Directory of `V<n>__<name>.sql` files, relative to the package.
    pub dir: String,
    /// A registered database id; absent = the plugin's own `plugin.db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// One function: an executable of the package.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Function {
    /// The executable, relative to the package (run directly: no shell).
    pub command: String,
    /// Time limit of one call in ms (default `plugins.function_timeout_ms`, at most 300000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One MCP tool a plugin declares.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolDecl {
    /// The tool's name within the plugin; the admin server lists it as `<plugin>-<name>`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub description: String,
    /// JSON Schema of the arguments (an object schema); calls are validated against it.
    #[schemars(schema_with = "crate::tools::object_schema")]
    pub input_schema: Value,
    /// The function (of `functions`) that serves it.
    pub function: String,
    /// True when the tool only reads (a read-only key may call it).
    #[serde(default)]
    pub read_only: bool,
    /// True when the tool may delete or overwrite.
    #[serde(default)]
    pub destructive: bool,
}

/// The checked `trex` key of a package.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<Migrations>,
    /// Static directory served at `/plugins/<name>/`, relative to the package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub functions: BTreeMap<String, Function>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDecl>,
    /// Keys of `trex` this build does not know (trexsql's `flow`, …): kept, reported, unused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
}

impl Manifest {
    /// The kinds this plugin registers (`migrations`, `ui`, `functions`, `tools`).
    pub fn registered_types(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.migrations.is_some() {
            v.push("migrations");
        }
        if self.ui.is_some() {
            v.push("ui");
        }
        if !self.functions.is_empty() {
            v.push("functions");
        }
        if !self.tools.is_empty() {
            v.push("tools");
        }
        v
    }

    /// The admin-server name of a declared tool.
    pub fn tool_name(plugin: &str, tool: &str) -> String {
        format!("{plugin}-{tool}")
    }
}

/// A package read from disk and checked.
#[derive(Debug, Clone)]
pub struct Package {
    /// `name` of package.json (`@scope/hello` or `hello`).
    pub package: String,
    /// The short name: the plugin's name.
    pub name: String,
    pub version: String,
    pub manifest: Manifest,
}

fn bad(field: &str, why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("`{field}` {why}"))
}

/// A relative path inside the package, checked lexically: no absolute path, no `..`.
fn inside(root: &Path, rel: &str, field: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if rel.is_empty() || p.is_absolute() {
        return Err(bad(field, "must be a relative path inside the package"));
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad(field, "must not leave the package (no `..`)"));
    }
    let full = root.join(p);
    // links were checked at unpack; this catches a directory install's link that points out
    let real = full
        .canonicalize()
        .map_err(|_| bad(field, format!("names {rel:?}, which is not in the package")))?;
    let root_real = root
        .canonicalize()
        .map_err(|e| Error::io(format!("cannot read {}", root.display()), e))?;
    if !real.starts_with(&root_real) {
        return Err(bad(field, "must not leave the package"));
    }
    Ok(full)
}

/// Reads `<root>/package.json` and checks its `trex` key against the files under `root`.
pub fn read_package(root: &Path) -> Result<Package> {
    let pj = root.join("package.json");
    let text = std::fs::read_to_string(&pj).map_err(|_| {
        Error::Invalid(
            "`packageSpec` holds no package.json (a plugin is a package whose package.json has a `trex` key)"
                .into(),
        )
    })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| bad("package.json", format!("is not JSON: {e}")))?;
    let package = v["name"]
        .as_str()
        .ok_or_else(|| bad("package.json name", "is missing"))?
        .to_string();
    let name = short_name(&package).map_err(|e| bad("package.json name", e))?;
    let version = v["version"]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 64)
        .ok_or_else(|| bad("package.json version", "is missing"))?
        .to_string();
    let Some(trex) = v.get("trex").and_then(Value::as_object) else {
        return Err(bad(
            "package.json trex",
            "is missing: a plugin's package.json declares what it brings under a `trex` object",
        ));
    };
    let mut m = Manifest::default();
    for (k, val) in trex {
        let field = format!("trex.{k}");
        match k.as_str() {
            "migrations" => {
                let mig = match val {
                    Value::String(dir) => Migrations {
                        dir: dir.clone(),
                        database: None,
                    },
                    other => serde_json::from_value(other.clone()).map_err(|e| {
                        bad(
                            &field,
                            format!("is not a directory or {{dir, database}}: {e}"),
                        )
                    })?,
                };
                let d = inside(root, &mig.dir, &format!("{field}.dir"))?;
                if !d.is_dir() {
                    return Err(bad(
                        &field,
                        format!("names {:?}, which is not a directory", mig.dir),
                    ));
                }
                if let Some(db) = &mig.database
                    && !crate::ops::databases::id_ok(db)
                {
                    return Err(bad(&format!("{field}.database"), "is not a database id"));
                }
                m.migrations = Some(mig);
            }
            "ui" => {
                let dir = match val {
                    Value::String(s) => s.clone(),
                    Value::Object(o)
                        if o.len() == 1 && o.get("dir").is_some_and(Value::is_string) =>
                    {
                        o["dir"].as_str().unwrap_or_default().to_string()
                    }
                    _ => return Err(bad(&field, "must be a directory name (or {\"dir\": …})")),
                };
                if !inside(root, &dir, &field)?.is_dir() {
                    return Err(bad(
                        &field,
                        format!("names {dir:?}, which is not a directory"),
                    ));
                }
                m.ui = Some(dir);
            }
            "functions" => {
                let Some(obj) = val.as_object() else {
                    return Err(bad(&field, "must be an object of name → executable"));
                };
                for (fname, spec) in obj {
                    let ff = format!("{field}.{fname}");
                    if !word_ok(fname, 48) {
                        return Err(bad(
                            &ff,
                            "must be named with 1–48 lower-case letters, digits, `-` or `_`",
                        ));
                    }
                    let f: Function = match spec {
                        Value::String(c) => Function {
                            command: c.clone(),
                            timeout_ms: None,
                            description: None,
                        },
                        other => serde_json::from_value(other.clone()).map_err(|e| {
                            bad(
                                &ff,
                                format!(
                                    "is not a command or {{command, timeoutMs, description}}: {e}"
                                ),
                            )
                        })?,
                    };
                    if f.timeout_ms.is_some_and(|t| !(100..=300_000).contains(&t)) {
                        return Err(bad(
                            &format!("{ff}.timeoutMs"),
                            "must be between 100 and 300000",
                        ));
                    }
                    let exe = inside(root, &f.command, &format!("{ff}.command"))?;
                    check_executable(&exe, &format!("{ff}.command"))?;
                    m.functions.insert(fname.clone(), f);
                }
            }
            "tools" => {
                let tools: Vec<ToolDecl> = serde_json::from_value(val.clone())
                    .map_err(|e| bad(&field, format!("is not a list of tools: {e}")))?;
                m.tools = tools;
            }
            _ => m.ignored.push(k.clone()),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in m.tools.iter().enumerate() {
        let tf = format!("trex.tools[{i}]");
        if !word_ok(&t.name, 48) {
            return Err(bad(
                &format!("{tf}.name"),
                "must be 1–48 lower-case letters, digits, `-` or `_`",
            ));
        }
        if !seen.insert(t.name.clone()) {
            return Err(bad(
                &format!("{tf}.name"),
                format!("{:?} is declared twice", t.name),
            ));
        }
        if t.description.trim().is_empty() {
            return Err(bad(&format!("{tf}.description"), "must not be empty"));
        }
        if !m.functions.contains_key(&t.function) {
            return Err(bad(
                &format!("{tf}.function"),
                format!("names {:?}, which is not one of trex.functions", t.function),
            ));
        }
        if t.input_schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(bad(
                &format!("{tf}.inputSchema"),
                "must be a JSON Schema with \"type\": \"object\"",
            ));
        }
        jsonschema::validator_for(&t.input_schema).map_err(|e| {
            bad(
                &format!("{tf}.inputSchema"),
                format!("is not a valid JSON Schema: {e}"),
            )
        })?;
        // headers mirrored from arguments must follow 2026-07-28's rules (clients drop the tool)
        crate::mcp::tool::param_headers(&t.input_schema)
            .map_err(|e| bad(&format!("{tf}.inputSchema"), e))?;
    }
    if m.registered_types().is_empty() {
        return Err(bad(
            "package.json trex",
            "declares none of migrations, ui, functions, tools",
        ));
    }
    Ok(Package {
        package,
        name,
        version,
        manifest: m,
    })
}

fn check_executable(p: &Path, field: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::metadata(p).map_err(|_| bad(field, "is not in the package"))?;
    if !md.is_file() {
        return Err(bad(field, "is not a file"));
    }
    if md.permissions().mode() & 0o111 == 0 {
        return Err(bad(
            field,
            "is not executable (chmod +x it; a script needs a #! line: functions run without a shell)",
        ));
    }
    Ok(())
}

/// Resolves a request path the way a server would — each segment percent-decoded, `.` and `..`
/// applied — and answers the result, or why it cannot be served (a segment that decodes to a
/// `/`, `\` or NUL, or `..` above the root). The `/plugins/` allow-list is checked on this, so
/// `/plugins/../trex/mcp` is `/trex/mcp` and is refused.
pub fn normalise(path: &str) -> std::result::Result<String, String> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err("path must start with /".into());
    }
    let mut out: Vec<String> = Vec::new();
    for raw in path.split('/').skip(1) {
        let seg = percent_decode(raw).ok_or("path holds a bad percent-escape")?;
        if seg.contains(['/', '\\', '\0']) {
            return Err("path holds an encoded `/`, `\\` or NUL".into());
        }
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err("path leaves the root with `..`".into());
                }
            }
            _ => out.push(seg),
        }
    }
    let trailing = path.ends_with('/') && !out.is_empty();
    let mut s = format!("/{}", out.join("/"));
    if trailing {
        s.push('/');
    }
    Ok(s)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a plugin request path names, once normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/plugins/<name>/fn/<function>`.
    Function { plugin: String, function: String },
    /// `/plugins/<name>/<file…>` (empty = `index.html`).
    Static { plugin: String, file: String },
}

/// Parses a normalised path under `/plugins/`; `None` when it is not one.
pub fn target_of(normalised: &str) -> Option<Target> {
    let rest = normalised.strip_prefix("/plugins/")?;
    let (plugin, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if plugin.is_empty() {
        return None;
    }
    if let Some(f) = tail.strip_prefix("fn/") {
        if f.is_empty() || f.contains('/') {
            return None;
        }
        return Some(Target::Function {
            plugin: plugin.into(),
            function: f.into(),
        });
    }
    Some(Target::Static {
        plugin: plugin.into(),
        file: tail.trim_end_matches('/').into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_resolves_before_the_allow_list() {
        assert_eq!(normalise("/plugins/../trex/mcp").unwrap(), "/trex/mcp");
        assert_eq!(normalise("/plugins/%2e%2e/trex/mcp").unwrap(), "/trex/mcp");
        assert_eq!(
            normalise("/plugins/hello/./fn/greet").unwrap(),
            "/plugins/hello/fn/greet"
        );
        assert!(normalise("/plugins/hello%2f..%2f..").is_err());
        assert!(normalise("/../etc/passwd").is_err());
        assert!(normalise("plugins/x").is_err());
        assert_eq!(normalise("/plugins/hello/").unwrap(), "/plugins/hello/");
        assert_eq!(
            normalise("/plugins/hello/fn/greet?x=1").unwrap(),
            "/plugins/hello/fn/greet"
        );
    }

    #[test]
    fn targets() {
        assert_eq!(
            target_of("/plugins/hello/fn/greet"),
            Some(Target::Function {
                plugin: "hello".into(),
                function: "greet".into()
            })
        );
        assert_eq!(
            target_of("/plugins/hello/"),
            Some(Target::Static {
                plugin: "hello".into(),
                file: "".into()
            })
        );
        assert_eq!(target_of("/trex/mcp"), None);
        assert_eq!(target_of("/plugins/hello/fn/a/b"), None);
    }

    #[test]
    fn names() {
        assert_eq!(short_name("@acme/hello").unwrap(), "hello");
        assert_eq!(short_name("hello-2").unwrap(), "hello-2");
        assert!(short_name("user").is_err());
        assert!(short_name("Hello").is_err());
        assert!(short_name("../x").is_err());
        assert!(short_name("@acme/").is_err());
    }
}

//! The one catalogue of MCP servers trex serves: the admin server `trex` at `{base}/mcp`, and
//! for every registered database its dialect server (`sqlite` or `postgres`) at
//! `/api/v1/endpoints/{id}/mcp/{server}`, and the migrations server at `/api/v1/mcp/migrations`
//! and per database at `/api/v1/endpoints/{id}/mcp/migrations`. Routes, key-scope
//! validation, the test helper and the CLI all read it, so a new server is declared once.
//!
//! Scope globs may name a server: `trex:user-*` allows the admin server's user tools only,
//! `sqlite:*` every tool of the SQLite endpoint servers; a bare glob (`user-*`) matches a tool
//! of any server.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use crate::auth::scopes::Scopes;
use crate::mcp::server::McpServer;
use crate::mcp::session::Sessions;
use crate::mcp::tool::Tool;
use crate::tools;

/// The admin server's scope name (and id).
pub const ADMIN: &str = "trex";
/// The migrations server's scope name (and id of the one at `/api/v1/mcp/migrations`).
pub const MIGRATIONS: &str = "migrations";

/// Every kind of server, by the name scopes use for it: (`name`, one instance of it).
fn kinds() -> Vec<(&'static str, McpServer)> {
    vec![
        (ADMIN, tools::admin_server()),
        ("sqlite", tools::endpoint::server("x", "sqlite")),
        ("postgres", tools::endpoint::server("x", "postgres")),
        (MIGRATIONS, tools::definitions::server(None)),
    ]
}

/// Every tool a key scope can refer to, with the scope name of its server.
pub fn known_tools() -> &'static [(&'static str, Tool)] {
    static TOOLS: LazyLock<Vec<(&'static str, Tool)>> = LazyLock::new(|| {
        kinds()
            .into_iter()
            .flat_map(|(name, s)| {
                s.tool_table()
                    .list
                    .iter()
                    .map(|t| (name, (**t).clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    });
    &TOOLS
}

/// The scope name of a server id (`trex`, `endpoint:<db>:sqlite` → `sqlite`).
pub fn scope_name(server_id: &str) -> &str {
    server_id.rsplit(':').next().unwrap_or(server_id)
}

/// Refuses scopes that name no tool: a `scopes.tools` pattern that matches no tool of any
/// server — the built-in ones, or `plugin_tools` (the admin-server tools installed plugins
/// declare, with their read-only hint) — or a combination (readOnly, tools) that leaves the key
/// no tool to call.
pub fn check_tool_globs(
    scopes: Option<&Scopes>,
    plugin_tools: &[(String, bool)],
) -> crate::Result<()> {
    let Some(s) = scopes else {
        return Ok(());
    };
    if let Some(globs) = &s.tools {
        for g in globs {
            if !known_tools()
                .iter()
                .any(|(server, t)| Scopes::glob_matches(g, server, &t.name))
                && !plugin_tools
                    .iter()
                    .any(|(name, _)| Scopes::glob_matches(g, ADMIN, name))
            {
                return Err(crate::Error::Invalid(format!(
                    "`scopes.tools` pattern {g:?} matches no tool"
                )));
            }
        }
    }
    if !known_tools()
        .iter()
        .any(|(server, t)| t.allowed_by(server, Some(s)))
        && !plugin_tools
            .iter()
            .any(|(name, read_only)| s.allows_tool(ADMIN, name, *read_only))
    {
        return Err(crate::Error::Invalid(
            "`scopes` allow no tool at all (with readOnly, only read-only tools and the SQL tools remain; \
             check the `tools` list)"
                .into(),
        ));
    }
    Ok(())
}

/// The servers of one running trex.
pub struct Catalogue {
    admin: Arc<McpServer>,
    /// The migrations server at `/api/v1/mcp/migrations`.
    migrations: Arc<McpServer>,
    /// Endpoint servers built on first use, by `<db id>:<server>`; emptied when databases change.
    endpoints: Mutex<(u64, HashMap<String, Arc<McpServer>>)>,
    /// The names of the admin server's tools that plugins declared.
    plugin_tools: Mutex<std::collections::BTreeSet<String>>,
    /// What the installed plugins were when their tools were last published.
    plugin_state: Mutex<Option<String>>,
}

impl Catalogue {
    /// The catalogue with the standard admin server.
    pub fn new() -> Catalogue {
        Catalogue::with_admin(tools::admin_server())
    }

    /// The catalogue with this admin server (tests add tools to it).
    pub fn with_admin(admin: McpServer) -> Catalogue {
        Catalogue {
            admin: Arc::new(admin.dynamic()),
            migrations: Arc::new(tools::definitions::server(None)),
            endpoints: Mutex::new((0, HashMap::new())),
            plugin_tools: Mutex::new(Default::default()),
            plugin_state: Mutex::new(None),
        }
    }

    /// The admin server.
    pub fn admin(&self) -> Arc<McpServer> {
        self.admin.clone()
    }

    /// The migrations server of every database.
    pub fn migrations(&self) -> Arc<McpServer> {
        self.migrations.clone()
    }

    /// The MCP server `name` of database `db_id`. `generation` is the registry's change counter
    /// ([`crate::App::databases_changed`]): when it moved, every cached server is dropped.
    pub fn endpoint(&self, db_id: &str, name: &str, generation: u64) -> Arc<McpServer> {
        let mut g = self.endpoints.lock().unwrap();
        if g.0 != generation {
            g.1.clear();
            g.0 = generation;
        }
        g.1.entry(format!("{db_id}:{name}"))
            .or_insert_with(|| {
                Arc::new(if name == MIGRATIONS {
                    tools::definitions::server(Some(db_id))
                } else {
                    tools::endpoint::server(db_id, name)
                })
            })
            .clone()
    }

    /// Adds a tool to the admin server while it runs (plugins) and tells its sessions
    /// (`notifications/tools/list_changed` on their standalone streams).
    pub fn add_admin_tool(&self, t: Tool, sessions: &Sessions) -> Result<(), String> {
        self.admin.add_tool(t)?;
        sessions.notify_server(&self.admin.id, "notifications/tools/list_changed");
        Ok(())
    }

    /// Removes a tool of the admin server while it runs, telling its sessions.
    pub fn remove_admin_tool(&self, name: &str, sessions: &Sessions) -> bool {
        let removed = self.admin.remove_tool(name);
        if removed {
            sessions.notify_server(&self.admin.id, "notifications/tools/list_changed");
        }
        removed
    }

    /// True (and remembered) when `fingerprint` — what the installed plugins are — differs from
    /// the one last published.
    pub fn plugins_changed(&self, fingerprint: &str) -> bool {
        let mut g = self.plugin_state.lock().unwrap();
        if g.as_deref() == Some(fingerprint) {
            return false;
        }
        *g = Some(fingerprint.to_string());
        true
    }

    /// Makes `tools` the admin server's plugin tools, replacing those of earlier calls, and
    /// tells its sessions when the list changed. A plugin tool whose name a built-in tool holds
    /// is left out (logged).
    pub fn set_plugin_tools(&self, tools: Vec<Tool>, sessions: &Sessions) {
        let mut have = self.plugin_tools.lock().unwrap();
        let mut changed = false;
        for gone in std::mem::take(&mut *have) {
            changed |= self.admin.remove_tool(&gone);
        }
        for t in tools {
            let name = t.name.clone();
            match self.admin.add_tool(t) {
                Ok(()) => {
                    have.insert(name);
                    changed = true;
                }
                Err(e) => tracing::warn!(tool = %name, "plugin tool not offered: {e}"),
            }
        }
        if changed {
            sessions.notify_server(&self.admin.id, "notifications/tools/list_changed");
        }
    }

    /// How many endpoint servers are cached (for tests and status).
    pub fn cached_endpoints(&self) -> usize {
        self.endpoints.lock().unwrap().1.len()
    }
}

impl Default for Catalogue {
    fn default() -> Self {
        Catalogue::new()
    }
}

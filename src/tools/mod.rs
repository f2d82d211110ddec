//! The admin MCP server `trex` (`{base}/mcp`): one file per tool group, each exporting `tools()`,
//! plus the shared pagination arguments and page results, and the plugin development guide
//! resource. Tools translate arguments and results; the rules are in [`crate::ops`].

pub mod api_keys;
pub mod apps;
pub mod audit;
pub mod backups;
pub mod cluster;
pub mod databases;
pub mod definitions;
pub mod endpoint;
pub mod etl;
pub mod jobs;
pub mod migrations;
pub mod plugins;
pub mod roles;
pub mod sessions;
pub mod sso;
pub mod trexdb;
pub mod users;

use crate::mcp::server::{McpServer, Resource, ResourceBody};
use crate::mcp::tool::ToolError;
use crate::store::Page;

/// Arguments of list tools that take nothing but pagination.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PageArgs {
    // the page size: the schema's default, minimum and maximum say it all
    #[schemars(range(min = 1, max = 1000), extend("default" = 100))]
    pub limit: Option<u32>,
    /// From `nextCursor`.
    pub cursor: Option<String>,
}

impl PageArgs {
    /// The checked page request ([`crate::ops::page`]).
    pub fn page(&self) -> Result<Page, ToolError> {
        Ok(crate::ops::page(self.limit, self.cursor.as_deref())?)
    }
}

/// The schema of an argument that is a JSON object or a word (`"none"`, `"rollback_all"`).
pub fn object_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": ["object", "string", "null"]})
}

/// The schema of an argument that is any JSON object.
pub fn object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object"})
}

/// Declares a list tool's result: the rows under `$field` plus `nextCursor`, made from a store
/// page with `From`, so every list tool pages alike.
macro_rules! page_of {
    ($(#[$m:meta])* $name:ident, $field:ident: $item:ty) => {
        $(#[$m])*
        #[derive(serde::Serialize, schemars::JsonSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            pub $field: Vec<$item>,
            /// Cursor of the next page; absent on the last page.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub next_cursor: Option<String>,
        }

        impl From<crate::store::Paged<$item>> for $name {
            fn from(p: crate::store::Paged<$item>) -> Self {
                let next_cursor = crate::ops::next_cursor(&p);
                $name {
                    $field: p.items,
                    next_cursor,
                }
            }
        }
    };
}
pub(crate) use page_of;

/// The URI of the plugin development guide.
pub const GUIDE_URI: &str = "trex://plugin-development-guide";

/// The admin server with every tool this build offers.
pub fn admin_server() -> McpServer {
    let mut s = McpServer::new("trex", "trex", "trex admin")
        .tools(users::tools())
        .tools(roles::tools())
        .tools(sessions::tools())
        .tools(sso::tools())
        .tools(apps::tools())
        .tools(api_keys::tools())
        .tools(databases::tools())
        .tools(trexdb::tools())
        .tools(migrations::tools())
        .tools(audit::tools())
        .tools(backups::tools())
        .tools(cluster::tools())
        .tools(plugins::tools())
        .tools(etl::tools())
        .resource(Resource {
            uri: GUIDE_URI.into(),
            name: "plugin-development-guide".into(),
            title: Some("Plugin development guide".into()),
            description: Some("How to write trex plugins (Markdown)".into()),
            mime_type: "text/markdown".into(),
            body: ResourceBody::Text(crate::plugins::GUIDE.into()),
        });
    s.instructions = Some(
        "trex administers a self-hosted data platform. Tools are grouped by prefix: user-* (users, their role, bans, \
         application roles), role-* (application roles), session-* (web and MCP sessions), sso-* (SSO providers), \
         app-* (OAuth apps), api-key-* (API keys and their scopes), database-* (registered PostgreSQL and SQLite \
         databases and their credentials), trexdb-* (the built-in SQL engine: catalog and trexdb-execute-sql), migration-* (versioned \
         migration files of core, trexdb and registered databases with a migrationsDir), \
         audit-list (who changed what), backup-* (online backups of the data dir), cluster-* (nodes sharing the store, this node's status), plugin-* (install, inspect, call and remove plugins; \
         a plugin's own tools appear as <plugin>-<tool>). Each registered database also has its own MCP server at \
         /api/v1/endpoints/{id}/mcp/{sqlite|postgres}. List tools take `limit` and `cursor` and return \
         `nextCursor` when more rows follow."
            .into(),
    );
    s
}

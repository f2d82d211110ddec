//! An MCP server definition: identity, tools, resources, resource templates, prompts and
//! completion. The admin server, the conformance fixture server and the endpoint servers are
//! all values of this type served by the same transport. The tool table may change while the
//! server runs (plugins add tools): [`McpServer::add_tool`] / [`McpServer::remove_tool`] swap in a
//! new table, readers take the current one without copying it, and a server built with
//! [`McpServer::dynamic`] declares `tools.listChanged: true` so clients expect
//! `notifications/tools/list_changed` (sent by [`crate::mcp::session::Sessions::notify_server`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value, json};

use super::protocol::RpcError;
use super::tool::Tool;

/// Contents of a resource read: one `{uri, mimeType, text|blob}` object per part.
pub type Contents = Vec<Value>;

/// A fixed resource.
#[derive(Clone)]
pub struct Resource {
    pub uri: String,
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub mime_type: String,
    /// `text` or base64 `blob`.
    pub body: ResourceBody,
}

/// The body of a fixed resource.
#[derive(Clone)]
pub enum ResourceBody {
    Text(String),
    /// Base64-encoded bytes.
    Blob(String),
}

impl Resource {
    fn describe(&self) -> Value {
        let mut v = json!({"uri": self.uri, "name": self.name, "mimeType": self.mime_type});
        if let Some(t) = &self.title {
            v["title"] = json!(t);
        }
        if let Some(d) = &self.description {
            v["description"] = json!(d);
        }
        if let ResourceBody::Text(t) = &self.body {
            v["size"] = json!(t.len());
        }
        v
    }

    fn contents(&self) -> Contents {
        match &self.body {
            ResourceBody::Text(t) => {
                vec![json!({"uri": self.uri, "mimeType": self.mime_type, "text": t})]
            }
            ResourceBody::Blob(b) => {
                vec![json!({"uri": self.uri, "mimeType": self.mime_type, "blob": b})]
            }
        }
    }
}

/// Reads a URI matching a template; `None` when it does not match.
pub type TemplateReader = Arc<dyn Fn(&str) -> Option<Contents> + Send + Sync>;

/// A resource template (RFC 6570 `uriTemplate`).
#[derive(Clone)]
pub struct ResourceTemplate {
    pub uri_template: String,
    pub name: String,
    pub description: Option<String>,
    pub mime_type: Option<String>,
    pub read: TemplateReader,
}

/// Renders a prompt from its arguments.
pub type PromptRenderer = Arc<
    dyn Fn(&Map<String, Value>, &crate::mcp::context::CallContext) -> Result<Value, RpcError>
        + Send
        + Sync,
>;

/// A prompt.
#[derive(Clone)]
pub struct Prompt {
    pub name: String,
    pub title: Option<String>,
    pub description: String,
    /// `(name, description, required)`.
    pub arguments: Vec<(String, String, bool)>,
    pub render: PromptRenderer,
}

impl Clone for McpServer {
    fn clone(&self) -> Self {
        McpServer {
            id: self.id.clone(),
            name: self.name.clone(),
            title: self.title.clone(),
            version: self.version.clone(),
            instructions: self.instructions.clone(),
            tools: RwLock::new(self.tool_table()),
            dynamic_tools: self.dynamic_tools,
            resources: self.resources.clone(),
            templates: self.templates.clone(),
            prompts: self.prompts.clone(),
            completer: self.completer.clone(),
            subscriptions: self.subscriptions,
            info_text: std::sync::OnceLock::new(),
        }
    }
}

/// Answers `completion/complete` params with a `completion` object.
pub type Completer = Arc<dyn Fn(&Value) -> Result<Value, RpcError> + Send + Sync>;

/// The tools of a server at one moment, with an index by name.
#[derive(Default)]
pub struct ToolTable {
    pub list: Vec<Arc<Tool>>,
    index: HashMap<String, usize>,
}

impl ToolTable {
    /// A tool by name.
    pub fn find(&self, name: &str) -> Option<&Arc<Tool>> {
        self.index.get(name).map(|i| &self.list[*i])
    }

    fn with(&self, t: Tool) -> Result<ToolTable, String> {
        let ok = !t.name.is_empty()
            && t.name.len() <= 128
            && t.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !ok {
            return Err(format!("bad tool name {:?}", t.name));
        }
        if self.index.contains_key(&t.name) {
            return Err(format!("duplicate tool {}", t.name));
        }
        let mut list = self.list.clone();
        list.push(Arc::new(t));
        Ok(ToolTable::of(list))
    }

    fn of(list: Vec<Arc<Tool>>) -> ToolTable {
        let index = list
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        ToolTable { list, index }
    }
}

/// A server definition.
pub struct McpServer {
    /// Short id, stored with each session and audit row (`trex`, `conformance`, ...).
    pub id: String,
    pub name: String,
    pub title: String,
    pub version: String,
    pub instructions: Option<String>,
    tools: RwLock<Arc<ToolTable>>,
    /// The tool table may change while the server runs (`tools.listChanged: true`).
    pub dynamic_tools: bool,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
    pub prompts: Vec<Prompt>,
    pub completer: Option<Completer>,
    /// Accept `resources/subscribe`.
    pub subscriptions: bool,
    /// `serverInfo` as JSON text for revisions from 2025-06-18, once asked for.
    info_text: std::sync::OnceLock<Arc<str>>,
}

impl McpServer {
    /// An empty server.
    pub fn new(id: &str, name: &str, title: &str) -> Self {
        McpServer {
            id: id.into(),
            name: name.into(),
            title: title.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            instructions: None,
            tools: RwLock::new(Arc::new(ToolTable::default())),
            dynamic_tools: false,
            resources: Vec::new(),
            templates: Vec::new(),
            prompts: Vec::new(),
            completer: None,
            subscriptions: false,
            info_text: std::sync::OnceLock::new(),
        }
    }

    /// Adds a tool; panics on a duplicate or invalid name (a programming error).
    pub fn tool(self, t: Tool) -> Self {
        let next = self.tool_table().with(t).unwrap_or_else(|e| panic!("{e}"));
        *self.tools.write().unwrap() = Arc::new(next);
        self
    }

    /// Declares that the tool table may change while the server runs.
    pub fn dynamic(mut self) -> Self {
        self.dynamic_tools = true;
        self
    }

    /// The current tool table (cheap: a shared pointer).
    pub fn tool_table(&self) -> Arc<ToolTable> {
        self.tools.read().unwrap().clone()
    }

    /// Adds a tool while the server runs (a plugin's); the caller then notifies the server's
    /// sessions ([`crate::mcp::session::Sessions::notify_server`]).
    pub fn add_tool(&self, t: Tool) -> Result<(), String> {
        let mut g = self.tools.write().unwrap();
        let next = g.with(t)?;
        *g = Arc::new(next);
        Ok(())
    }

    /// Removes a tool while the server runs; false when there was none of that name.
    pub fn remove_tool(&self, name: &str) -> bool {
        let mut g = self.tools.write().unwrap();
        if g.find(name).is_none() {
            return false;
        }
        let list = g.list.iter().filter(|t| t.name != name).cloned().collect();
        *g = Arc::new(ToolTable::of(list));
        true
    }

    /// Adds several tools.
    pub fn tools(self, ts: impl IntoIterator<Item = Tool>) -> Self {
        ts.into_iter().fold(self, |s, t| s.tool(t))
    }

    /// Adds a fixed resource.
    pub fn resource(mut self, r: Resource) -> Self {
        self.resources.push(r);
        self
    }

    /// Adds a resource template.
    pub fn template(mut self, t: ResourceTemplate) -> Self {
        self.templates.push(t);
        self
    }

    /// Adds a prompt.
    pub fn prompt(mut self, p: Prompt) -> Self {
        self.prompts.push(p);
        self
    }

    /// A tool by name.
    pub fn find_tool(&self, name: &str) -> Option<Arc<Tool>> {
        self.tool_table().find(name).cloned()
    }

    /// The `capabilities` object of the initialize result: only what this server offers.
    pub fn capabilities(&self) -> Value {
        let mut c = json!({"logging": {}});
        if self.dynamic_tools || !self.tool_table().list.is_empty() {
            c["tools"] = json!({"listChanged": self.dynamic_tools});
        }
        if !self.resources.is_empty() || !self.templates.is_empty() {
            c["resources"] = json!({"subscribe": self.subscriptions, "listChanged": false});
        }
        if !self.prompts.is_empty() {
            c["prompts"] = json!({"listChanged": false});
        }
        if self.completer.is_some() {
            c["completions"] = json!({});
        }
        c
    }

    /// The `serverInfo` object for a revision.
    pub fn info(&self, version: &str) -> Value {
        let mut v = json!({"name": self.name, "version": self.version});
        if version >= "2025-06-18" {
            v["title"] = json!(self.title);
        }
        v
    }

    /// [`info`](Self::info) as JSON text, kept after the first call for revisions from
    /// 2025-06-18 (every result of the stateless era carries it).
    pub fn info_text(&self, version: &str) -> Arc<str> {
        if version < "2025-06-18" {
            return Arc::from(self.info(version).to_string());
        }
        self.info_text
            .get_or_init(|| Arc::from(self.info(version).to_string()))
            .clone()
    }

    /// `resources/list` entries.
    pub fn resource_list(&self) -> Vec<Value> {
        self.resources.iter().map(Resource::describe).collect()
    }

    /// `resources/templates/list` entries.
    pub fn template_list(&self) -> Vec<Value> {
        self.templates
            .iter()
            .map(|t| {
                let mut v = json!({"uriTemplate": t.uri_template, "name": t.name});
                if let Some(d) = &t.description {
                    v["description"] = json!(d);
                }
                if let Some(m) = &t.mime_type {
                    v["mimeType"] = json!(m);
                }
                v
            })
            .collect()
    }

    /// Reads a resource by URI (fixed ones first, then templates).
    pub fn read_resource(&self, uri: &str) -> Option<Contents> {
        if let Some(r) = self.resources.iter().find(|r| r.uri == uri) {
            return Some(r.contents());
        }
        self.templates.iter().find_map(|t| (t.read)(uri))
    }

    /// True when `uri` names a resource of this server.
    pub fn has_resource(&self, uri: &str) -> bool {
        self.read_resource(uri).is_some()
    }

    /// `prompts/list` entries.
    pub fn prompt_list(&self) -> Vec<Value> {
        self.prompts
            .iter()
            .map(|p| {
                let args: Vec<Value> = p
                    .arguments
                    .iter()
                    .map(|(n, d, r)| json!({"name": n, "description": d, "required": r}))
                    .collect();
                let mut v =
                    json!({"name": p.name, "description": p.description, "arguments": args});
                if let Some(t) = &p.title {
                    v["title"] = json!(t);
                }
                v
            })
            .collect()
    }
}

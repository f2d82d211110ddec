//! An MCP server definition: identity, tools, resources, resource templates, prompts and
//! completion. The admin server, the conformance fixture server and (later) endpoint servers are
//! all values of this type served by the same transport.

use std::collections::HashMap;
use std::sync::Arc;

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
pub type PromptRenderer = Arc<dyn Fn(&Map<String, Value>) -> Result<Value, RpcError> + Send + Sync>;

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

/// Answers `completion/complete` params with a `completion` object.
pub type Completer = Arc<dyn Fn(&Value) -> Result<Value, RpcError> + Send + Sync>;

/// A server definition.
#[derive(Clone)]
pub struct McpServer {
    /// Short id, stored with each session and audit row (`trex`, `conformance`, ...).
    pub id: String,
    pub name: String,
    pub title: String,
    pub version: String,
    pub instructions: Option<String>,
    pub tools: Vec<Arc<Tool>>,
    tool_index: HashMap<String, usize>,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
    pub prompts: Vec<Prompt>,
    pub completer: Option<Completer>,
    /// Accept `resources/subscribe`.
    pub subscriptions: bool,
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
            tools: Vec::new(),
            tool_index: HashMap::new(),
            resources: Vec::new(),
            templates: Vec::new(),
            prompts: Vec::new(),
            completer: None,
            subscriptions: false,
        }
    }

    /// Adds a tool; panics on a duplicate or invalid name (a programming error).
    pub fn tool(mut self, t: Tool) -> Self {
        assert!(
            !t.name.is_empty()
                && t.name.len() <= 128
                && t.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)),
            "bad tool name {}",
            t.name
        );
        assert!(
            !self.tool_index.contains_key(&t.name),
            "duplicate tool {}",
            t.name
        );
        self.tool_index.insert(t.name.clone(), self.tools.len());
        self.tools.push(Arc::new(t));
        self
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
    pub fn find_tool(&self, name: &str) -> Option<&Arc<Tool>> {
        self.tool_index.get(name).map(|i| &self.tools[*i])
    }

    /// The `capabilities` object of the initialize result: only what this server offers.
    pub fn capabilities(&self) -> Value {
        let mut c = json!({"logging": {}});
        if !self.tools.is_empty() {
            c["tools"] = json!({"listChanged": false});
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

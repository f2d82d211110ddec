//! Tools: a name, a description, `inputSchema` and `outputSchema` generated from the same Rust
//! types the handler takes and returns (schemars), truthful annotations, and a handler. Argument
//! validation failures become `isError` results naming the field (2025-11-25 rule).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::context::CallContext;
use super::protocol::Json;
use crate::app::App;
use crate::error::Error;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a tool hands to its handler: the application, the request's context, and the caller
/// as the domain layer takes it.
#[derive(Clone)]
pub struct ToolCtx {
    pub app: Arc<App>,
    pub call: Arc<CallContext>,
    pub actor: crate::audit::Actor,
}

/// The behaviour hints of a tool (MCP `annotations`); they must tell the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Annotations {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

impl Annotations {
    /// Reads only; safe to repeat.
    pub const READ: Annotations = Annotations {
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    };
    /// Adds something new; repeating it adds again.
    pub const CREATE: Annotations = Annotations {
        read_only: false,
        destructive: false,
        idempotent: false,
        open_world: false,
    };
    /// Changes something in place; repeating gives the same state.
    pub const UPDATE: Annotations = Annotations {
        read_only: false,
        destructive: false,
        idempotent: true,
        open_world: false,
    };
    /// Removes or revokes something; repeating changes nothing more.
    pub const DESTROY: Annotations = Annotations {
        read_only: false,
        destructive: true,
        idempotent: true,
        open_world: false,
    };

    /// The hints that differ from the spec's defaults (`readOnlyHint` false, `destructiveHint`
    /// true, `idempotentHint` false, `openWorldHint` true; the middle two mean something only
    /// when the tool is not read-only), so clients read the same and the list stays short.
    /// `title` goes here only for 2025-03-26 clients, which have no tool-level title.
    fn to_value(self, title: Option<&str>) -> Value {
        let mut v = serde_json::Map::new();
        if self.read_only {
            v.insert("readOnlyHint".into(), json!(true));
        } else {
            if !self.destructive {
                v.insert("destructiveHint".into(), json!(false));
            }
            if self.idempotent {
                v.insert("idempotentHint".into(), json!(true));
            }
        }
        if !self.open_world {
            v.insert("openWorldHint".into(), json!(false));
        }
        if let Some(t) = title {
            v.insert("title".into(), json!(t));
        }
        Value::Object(v)
    }
}

/// The result of a tool call.
#[derive(Debug, Clone)]
pub enum ToolOutput {
    /// Content blocks and, for tools with an `outputSchema`, the structured result.
    Ok {
        content: Vec<Value>,
        structured: Option<Value>,
    },
    /// A structured result already serialized (the typed-tool path: serialized once, sent as
    /// `structuredContent` and, escaped, as the text block).
    Json(String),
    /// A tool execution error: `isError: true` with this text.
    Err(String),
}

impl ToolOutput {
    /// A structured result plus the same JSON as compact text.
    pub fn structured(v: Value) -> Self {
        ToolOutput::Ok {
            content: vec![json!({"type": "text", "text": v.to_string()})],
            structured: Some(v),
        }
    }

    /// Plain text.
    pub fn text(t: impl Into<String>) -> Self {
        ToolOutput::Ok {
            content: vec![json!({"type": "text", "text": t.into()})],
            structured: None,
        }
    }

    /// The `CallToolResult` object, serialized.
    pub fn into_result(self) -> Json {
        match self {
            ToolOutput::Ok {
                content,
                structured,
            } => {
                let mut r = json!({"content": content, "isError": false});
                if let Some(s) = structured {
                    r["structuredContent"] = s;
                }
                Json::plain_object(r.to_string())
            }
            ToolOutput::Json(s) => {
                let text = serde_json::to_string(&s).expect("a string serializes");
                let mut body = String::with_capacity(text.len() + s.len() + 80);
                body.push_str(r#"{"content":[{"type":"text","text":"#);
                body.push_str(&text);
                body.push_str(r#"}],"isError":false,"structuredContent":"#);
                body.push_str(&s);
                body.push('}');
                Json::plain_object(body)
            }
            ToolOutput::Err(msg) => Json::plain_object(
                json!({
                    "content": [{"type": "text", "text": msg}],
                    "isError": true,
                })
                .to_string(),
            ),
        }
    }

    /// True for an error result.
    pub fn is_error(&self) -> bool {
        matches!(self, ToolOutput::Err(_))
    }
}

/// How a tool handler fails.
#[derive(Debug)]
pub enum ToolError {
    /// Bad input; the text names the field.
    Invalid(String),
    /// An expected failure phrased for the caller ("User not found").
    Failed(String),
    /// The server failed; logged, and reported without internals.
    Internal(Error),
}

impl ToolError {
    /// Bad input for `field`.
    pub fn field(field: &str, why: impl std::fmt::Display) -> Self {
        ToolError::Invalid(format!("Invalid arguments: `{field}` {why}"))
    }
}

impl From<Error> for ToolError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(m) => ToolError::Invalid(format!("Invalid arguments: {m}")),
            Error::NotFound(m) | Error::Conflict(m) => ToolError::Failed(m),
            other => ToolError::Internal(other),
        }
    }
}

impl ToolError {
    fn into_output(self, tool: &str) -> ToolOutput {
        match self {
            ToolError::Invalid(m) | ToolError::Failed(m) => ToolOutput::Err(m),
            ToolError::Internal(e) => {
                ToolOutput::Err(crate::error::internal(&format!("tool {tool} failed"), &e))
            }
        }
    }
}

type Handler = Arc<dyn Fn(ToolCtx, Value) -> BoxFuture<ToolOutput> + Send + Sync>;

/// One tool of an MCP server.
#[derive(Clone)]
pub struct Tool {
    pub name: String,
    pub title: Option<String>,
    pub description: String,
    pub input_schema: Value,
    pub output_schema: Option<Value>,
    pub annotations: Annotations,
    /// True when the tool may emit progress, logs or server→client requests: its calls are
    /// answered over SSE.
    pub streaming: bool,
    /// True when a read-only key may call it although it is not read-only: the tool itself then
    /// does only what reads (the SQL tools run Safe statements only, engine-enforced).
    pub read_only_capable: bool,
    /// Arguments mirrored into `Mcp-Param-{name}` headers (`x-mcp-header` in the input schema,
    /// 2026-07-28): the stateless transport checks each header against the body.
    pub param_headers: Arc<[ParamHeader]>,
    /// Whether and how a call may run as a task (the tasks extension of 2026-07-28).
    pub task: TaskSupport,
    handler: Handler,
}

/// Whether a tool's calls may become tasks (`io.modelcontextprotocol/tasks`).
#[derive(Clone, Default)]
pub enum TaskSupport {
    /// Always answered in the request.
    #[default]
    Never,
    /// Run as a task when the client declared the extension, else answered in the request.
    Optional,
    /// Only as a task: a client without the extension gets -32021.
    Required,
    /// Only as a task, which the tool starts itself ([`CallContext::start_task`]) after what it
    /// asks in the request (multi-round-trip) is answered.
    ///
    /// [`CallContext::start_task`]: super::context::CallContext::start_task
    Deferred,
}

/// A tool argument mirrored into a request header (`x-mcp-header`).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamHeader {
    /// The chain of `properties` keys leading to the argument.
    pub path: Vec<String>,
    /// The header's name, lowercase: `mcp-param-{x-mcp-header}`.
    pub header: String,
    /// `string`, `integer` or `boolean`.
    pub kind: &'static str,
}

/// True for an RFC 9110 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// The `x-mcp-header` annotations of an input schema, checked as 2026-07-28 requires: a
/// non-empty token, unique regardless of case, on a string, integer or boolean property
/// reachable from the root through `properties` keys only. Anything else is an error naming
/// where (a client would drop the tool).
pub fn param_headers(schema: &Value) -> Result<Vec<ParamHeader>, String> {
    fn walk(
        v: &Value,
        path: &mut Vec<String>,
        reachable: bool,
        out: &mut Vec<ParamHeader>,
    ) -> Result<(), String> {
        match v {
            Value::Object(o) => {
                if let Some(h) = o.get("x-mcp-header") {
                    let at = format!("/{}", path.join("/"));
                    let name = h
                        .as_str()
                        .filter(|n| !n.is_empty() && n.chars().all(is_tchar))
                        .ok_or_else(|| format!("x-mcp-header at {at} must be a non-empty token"))?;
                    if !reachable || path.is_empty() {
                        return Err(format!(
                            "x-mcp-header at {at} is not on a property reachable through `properties` only"
                        ));
                    }
                    let kind = match o.get("type").and_then(Value::as_str) {
                        Some("string") => "string",
                        Some("integer") => "integer",
                        Some("boolean") => "boolean",
                        _ => {
                            return Err(format!(
                                "x-mcp-header at {at} must be on a string, integer or boolean property"
                            ));
                        }
                    };
                    let header = format!("mcp-param-{}", name.to_ascii_lowercase());
                    if out.iter().any(|p| p.header == header) {
                        return Err(format!("x-mcp-header {name:?} is used twice"));
                    }
                    out.push(ParamHeader {
                        path: path.clone(),
                        header,
                        kind,
                    });
                }
                for (k, child) in o {
                    if k == "properties"
                        && let Value::Object(props) = child
                    {
                        for (name, p) in props {
                            path.push(name.clone());
                            walk(p, path, reachable, out)?;
                            path.pop();
                        }
                    } else if k != "x-mcp-header" {
                        path.push(k.clone());
                        walk(child, path, false, out)?;
                        path.pop();
                    }
                }
                Ok(())
            }
            Value::Array(a) => {
                for x in a {
                    walk(x, path, false, out)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    let mut out = Vec::new();
    walk(schema, &mut Vec::new(), true, &mut out)?;
    Ok(out)
}

fn headers_of(name: &str, schema: &Value) -> Arc<[ParamHeader]> {
    param_headers(schema)
        .unwrap_or_else(|e| panic!("tool {name}: {e}"))
        .into()
}

/// The JSON Schema (2020-12, MCP's default dialect, so no `$schema`) of `T`, lean: without the
/// Rust type name as `title`, without the type's own doc line (`Arguments of …` / `Result of …`:
/// the tool's description says it), and without schemars' non-standard `format`s (`uint64`,
/// `int32`, `double`, …), which validators warn about on every call — the `minimum` schemars
/// sets for unsigned types stays.
pub fn schema_of<T: JsonSchema>() -> Value {
    let mut v = serde_json::to_value(schemars::schema_for!(T)).expect("schema serializes");
    if let Some(o) = v.as_object_mut() {
        o.remove("title");
        o.remove("$schema");
        o.remove("description");
    }
    drop_nonstandard_formats(&mut v);
    v
}

/// An output schema as `tools/list` sends it: without `description`s (a client validates and
/// reads a result with it; what each field means is the tool's description and the input
/// schema's business) and with every `$defs` entry that is used once put in its place. It
/// accepts exactly what the full schema accepts.
pub fn lean_output(mut v: Value) -> Value {
    fn strip(v: &mut Value, in_properties: bool) {
        match v {
            Value::Object(o) => {
                if !in_properties && o.get("description").is_some_and(Value::is_string) {
                    o.remove("description");
                }
                for (k, x) in o.iter_mut() {
                    strip(x, !in_properties && (k == "properties" || k == "$defs"));
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| strip(x, false)),
            _ => {}
        }
    }
    strip(&mut v, false);
    inline_single_use(v)
}

/// An input schema as `tools/list` sends it: every `$defs` entry used once put in its place
/// (the property's own description kept over the definition's), and an optional property
/// (not in `required`) described by its type alone — `"string"`, not `["string", "null"]`: a
/// client leaves out what it does not mean to send, and the server still takes `null` for it.
pub fn lean_input(v: Value) -> Value {
    fn denull(p: &mut Value) {
        let Some(o) = p.as_object_mut() else { return };
        if let Some(Value::Array(types)) = o.get("type")
            && types.len() == 2
            && types.iter().any(|t| t == "null")
        {
            let t = types
                .iter()
                .find(|t| *t != "null")
                .cloned()
                .unwrap_or_default();
            o.insert("type".into(), t);
        }
        let null = json!({"type": "null"});
        if let Some(Value::Array(any)) = o.get("anyOf")
            && any.len() == 2
            && any.contains(&null)
            && let Some(Value::Object(mut other)) = any.iter().find(|x| **x != null).cloned()
            && {
                // the property's own description says it better than the type's
                if o.contains_key("description") {
                    other.remove("description");
                }
                other.keys().all(|k| !o.contains_key(k))
            }
        {
            o.remove("anyOf");
            o.extend(other);
        }
    }
    fn walk(v: &mut Value) {
        match v {
            Value::Object(o) => {
                let required: Vec<String> = o
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| {
                        r.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(Value::Object(props)) = o.get_mut("properties") {
                    for (k, p) in props.iter_mut() {
                        if !required.contains(k) {
                            denull(p);
                        }
                    }
                }
                o.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = inline_single_use(v);
    walk(&mut v);
    v
}

/// `v` with every `$defs` entry that is used once (and not by a definition) put in its place.
fn inline_single_use(mut v: Value) -> Value {
    fn count(v: &Value, uses: &mut std::collections::HashMap<String, usize>) {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str)
                    && let Some(name) = r.strip_prefix("#/$defs/")
                {
                    *uses.entry(name.to_string()).or_default() += 1;
                }
                o.values().for_each(|x| count(x, uses));
            }
            Value::Array(a) => a.iter().for_each(|x| count(x, uses)),
            _ => {}
        }
    }
    fn inline(v: &mut Value, defs: &serde_json::Map<String, Value>, once: &[String]) {
        match v {
            Value::Object(o) => {
                let target = o
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                    .filter(|n| once.iter().any(|x| x == n))
                    .map(str::to_string);
                if let Some(name) = target
                    && let Some(Value::Object(body)) = defs.get(&name)
                {
                    o.remove("$ref");
                    for (k, x) in body {
                        o.entry(k.clone()).or_insert_with(|| x.clone());
                    }
                }
                o.values_mut().for_each(|x| inline(x, defs, once));
            }
            Value::Array(a) => a.iter_mut().for_each(|x| inline(x, defs, once)),
            _ => {}
        }
    }
    let mut uses = std::collections::HashMap::new();
    count(&v, &mut uses);
    let Some(Value::Object(defs)) = v.get("$defs").cloned() else {
        return v;
    };
    // a definition used once, and not by itself or another definition, moves to its use
    let mut inner = std::collections::HashMap::new();
    count(&Value::Object(defs.clone()), &mut inner);
    let once: Vec<String> = defs
        .keys()
        .filter(|k| uses.get(*k) == Some(&1) && !inner.contains_key(*k))
        .cloned()
        .collect();
    if once.is_empty() {
        return v;
    }
    if let Some(o) = v.as_object_mut() {
        let mut rest = defs.clone();
        for k in &once {
            rest.remove(k);
        }
        if rest.is_empty() {
            o.remove("$defs");
        } else {
            o.insert("$defs".into(), Value::Object(rest));
        }
    }
    inline(&mut v, &defs, &once);
    v
}

/// The `format` values JSON Schema 2020-12 defines; any other is dropped from our schemas.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

fn drop_nonstandard_formats(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| !STANDARD_FORMATS.contains(&f))
            {
                o.remove("format");
            }
            o.values_mut().for_each(drop_nonstandard_formats);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nonstandard_formats),
        _ => {}
    }
}

/// A serde message without the value it quotes: `invalid type: integer `123`, expected a
/// string` becomes `invalid type: integer, expected a string` (and likewise `invalid value: …`
/// and `unknown variant …`). Argument errors are shown to the client and kept in the audit log,
/// and the value may be a secret (a password sent as a number). Names (`unknown field `x``,
/// `expected one of `a`, `b``) stay.
pub fn without_values(msg: &str) -> String {
    let Some(i) = msg.find(['`', '"']) else {
        return msg.to_string();
    };
    let head = &msg[..i];
    let echoes = head.starts_with("invalid type: ")
        || head.starts_with("invalid value: ")
        || head.starts_with("unknown variant");
    if !echoes {
        return msg.to_string();
    }
    let q = msg.as_bytes()[i] as char;
    // the value ends at the quote that is followed by ", expected" (values may hold quotes)
    let end = msg[i + 1..]
        .find(&format!("{q}, expected"))
        .or_else(|| msg[i + 1..].rfind(q))
        .map(|j| i + 2 + j)
        .unwrap_or(msg.len());
    format!("{}{}", head.trim_end(), &msg[end..])
}

/// Debug builds (every test) check each typed tool's result against the output schema it
/// publishes, so a schema that stops describing what the tool returns fails the tests that
/// call it instead of a client's validator. Release builds do not pay for it.
#[cfg(debug_assertions)]
struct OutputCheck {
    tool: String,
    validator: jsonschema::Validator,
}

#[cfg(debug_assertions)]
impl OutputCheck {
    fn new(tool: &str, schema: &Value) -> OutputCheck {
        let validator = jsonschema::validator_for(schema)
            .unwrap_or_else(|e| panic!("tool {tool}: its output schema does not compile: {e}"));
        OutputCheck {
            tool: tool.to_string(),
            validator,
        }
    }

    fn check(&self, json: &str) -> Result<(), String> {
        let v: Value = serde_json::from_str(json).expect("just serialized");
        let errors: Vec<String> = self
            .validator
            .iter_errors(&v)
            .take(3)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "tool {}: its result does not match its outputSchema: {}",
                self.tool,
                errors.join("; ")
            ))
        }
    }
}

/// Deserializes arguments, naming the offending field on failure (and never echoing its value).
pub fn parse_args<T: DeserializeOwned>(args: Value) -> Result<T, ToolError> {
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let inner = without_values(&e.into_inner().to_string());
        if path == "." || path.is_empty() {
            ToolError::Invalid(format!("Invalid arguments: {inner}"))
        } else {
            ToolError::Invalid(format!("Invalid arguments: `{path}`: {inner}"))
        }
    })
}

impl Tool {
    /// A tool whose input and output are Rust types: schemas are generated from them, input is
    /// deserialized (unknown fields refused) and output serialized as `structuredContent`.
    pub fn typed<I, O, F, Fut>(
        name: &str,
        title: &str,
        description: &str,
        annotations: Annotations,
        f: F,
    ) -> Tool
    where
        I: DeserializeOwned + JsonSchema + Send + 'static,
        O: Serialize + JsonSchema + 'static,
        F: Fn(ToolCtx, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, ToolError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let tool_name = name.to_string();
        let output_schema = lean_output(schema_of::<O>());
        #[cfg(debug_assertions)]
        let conformance = Arc::new(OutputCheck::new(&tool_name, &output_schema));
        let handler: Handler = Arc::new(move |ctx, args| {
            let f = f.clone();
            let tool_name = tool_name.clone();
            #[cfg(debug_assertions)]
            let conformance = conformance.clone();
            Box::pin(async move {
                let args = if args.is_null() { json!({}) } else { args };
                let input = match parse_args::<I>(args) {
                    Ok(i) => i,
                    Err(e) => return e.into_output(&tool_name),
                };
                match f(ctx, input).await {
                    Ok(out) => match serde_json::to_string(&out) {
                        #[cfg(debug_assertions)]
                        Ok(s) if let Err(why) = conformance.check(&s) => ToolOutput::Err(why),
                        Ok(s) => ToolOutput::Json(s),
                        Err(e) => ToolOutput::Err(crate::error::internal(
                            &format!("tool {tool_name}: cannot serialize result"),
                            &e,
                        )),
                    },
                    Err(e) => e.into_output(&tool_name),
                }
            })
        });
        let input_schema = lean_input(schema_of::<I>());
        Tool {
            name: name.to_string(),
            title: Some(title.to_string()),
            description: description.to_string(),
            param_headers: headers_of(name, &input_schema),
            input_schema,
            output_schema: Some(output_schema),
            annotations,
            streaming: false,
            read_only_capable: false,
            task: TaskSupport::Never,
            handler,
        }
    }

    /// A tool with a hand-written input schema and a handler over raw arguments.
    pub fn raw<F, Fut>(
        name: &str,
        description: &str,
        input_schema: Value,
        annotations: Annotations,
        f: F,
    ) -> Tool
    where
        F: Fn(ToolCtx, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ToolOutput> + Send + 'static,
    {
        let f = Arc::new(f);
        Tool {
            name: name.to_string(),
            title: None,
            description: description.to_string(),
            param_headers: headers_of(name, &input_schema),
            task: TaskSupport::Never,
            input_schema,
            output_schema: None,
            annotations,
            streaming: false,
            read_only_capable: false,
            handler: Arc::new(move |ctx, args| Box::pin(f(ctx, args))),
        }
    }

    /// Marks the tool as one that talks to the client while it runs (answered over SSE).
    pub fn streaming(mut self) -> Tool {
        self.streaming = true;
        self
    }

    /// Lets the tool's calls run as tasks (`Optional`: when the client supports them;
    /// `Required`: only so).
    pub fn task(mut self, support: TaskSupport) -> Tool {
        self.task = support;
        self
    }

    /// Marks the tool as one a read-only key may call (it restricts itself to reads then).
    pub fn read_only_capable(mut self) -> Tool {
        self.read_only_capable = true;
        self
    }

    /// True when a key with these scopes may list and call the tool, which belongs to the
    /// server whose scope name is `server` (`trex`, `sqlite`, …).
    pub fn allowed_by(&self, server: &str, scopes: Option<&crate::auth::scopes::Scopes>) -> bool {
        scopes.is_none_or(|s| {
            s.allows_tool(
                server,
                &self.name,
                self.annotations.read_only || self.read_only_capable,
            )
        })
    }

    /// Runs the tool.
    pub fn call(&self, ctx: ToolCtx, args: Value) -> BoxFuture<ToolOutput> {
        (self.handler)(ctx, args)
    }

    /// The entry of `tools/list` for a client of `protocol_version`, with the output schema
    /// when `with_output` (the URL's `?outputSchemas=true`).
    pub fn describe(&self, protocol_version: &str, with_output: bool) -> Value {
        // 2025-03-26 knows a title only inside annotations; later revisions beside the name
        let old = protocol_version == "2025-03-26";
        let annotations = self
            .annotations
            .to_value(self.title.as_deref().filter(|_| old));
        let mut v = json!({
            "name": self.name,
            "description": self.description,
            "inputSchema": self.input_schema,
            "annotations": annotations,
        });
        if let Some(t) = self.title.as_ref().filter(|_| !old) {
            v["title"] = json!(t);
        }
        if let Some(o) = self.output_schema.as_ref().filter(|_| with_output) {
            v["outputSchema"] = o.clone();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Args {
        email: String,
        limit: Option<u32>,
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = parse_args::<Args>(json!({"email": 5})).err().unwrap();
        let ToolError::Invalid(m) = e else { panic!() };
        assert!(m.contains("`email`"), "{m}");
        let ToolError::Invalid(m) = parse_args::<Args>(json!({})).err().unwrap() else {
            panic!()
        };
        assert!(m.contains("email"), "{m}");
        let ToolError::Invalid(m) = parse_args::<Args>(json!({"email":"a","bogus":1}))
            .err()
            .unwrap()
        else {
            panic!()
        };
        assert!(m.contains("bogus"), "{m}");
    }

    #[test]
    fn argument_errors_do_not_echo_values() {
        let ToolError::Invalid(m) = parse_args::<Args>(json!({"email": 123456})).err().unwrap()
        else {
            panic!()
        };
        assert!(!m.contains("123456"), "{m}");
        assert!(
            m.contains("`email`") && m.contains("expected a string"),
            "{m}"
        );
        assert_eq!(
            without_values("unknown variant `hunter2`, expected `admin` or `user`"),
            "unknown variant, expected `admin` or `user`"
        );
        assert_eq!(
            without_values("invalid value: string \"s3\"cr\"et\", expected a date"),
            "invalid value: string, expected a date"
        );
        assert_eq!(
            without_values("unknown field `bogus`"),
            "unknown field `bogus`"
        );
    }

    #[test]
    fn a_result_its_schema_does_not_describe_is_caught() {
        let c = OutputCheck::new(
            "t",
            &json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}, "required": ["n"]}),
        );
        assert!(c.check(r#"{"n": 3}"#).is_ok());
        let e = c.check(r#"{"n": -1}"#).unwrap_err();
        assert!(e.contains("tool t") && e.contains("/n"), "{e}");
        assert!(c.check("{}").is_err());
    }

    #[test]
    fn schemas_are_lean_and_standard() {
        #[derive(JsonSchema)]
        #[allow(dead_code)]
        /// Arguments of `t`.
        struct Counts {
            a: u64,
            b: u32,
            c: i64,
            d: f64,
        }
        let s = schema_of::<Counts>();
        let text = s.to_string();
        assert!(!text.contains("format"), "{text}");
        assert!(
            s.get("$schema").is_none() && s.get("description").is_none(),
            "{text}"
        );
        assert_eq!(s["properties"]["a"]["minimum"], 0);
    }

    #[test]
    fn lean_input_schemas_drop_null_from_optional_fields_only() {
        #[derive(serde::Deserialize, JsonSchema)]
        #[allow(dead_code)]
        enum Mode {
            Fast,
            Slow,
        }
        #[derive(serde::Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct In {
            email: String,
            /// Page size.
            #[schemars(range(min = 1))]
            limit: Option<u32>,
            /// How.
            mode: Option<Mode>,
            /// Required, yet may be null.
            #[serde(default)]
            note: Option<String>,
        }
        let mut full = schema_of::<In>();
        // make `note` required-but-nullable, as a field without a default would be
        full["required"] = json!(["email", "note"]);
        let lean = lean_input(full.clone());
        let p = &lean["properties"];
        assert_eq!(p["limit"]["type"], "integer", "{lean}");
        assert_eq!(p["limit"]["minimum"], 1, "{lean}");
        assert_eq!(p["limit"]["description"], "Page size.");
        assert!(
            p["mode"].get("anyOf").is_none() && p["mode"]["enum"].is_array(),
            "{lean}"
        );
        assert_eq!(p["mode"]["description"], "How.");
        assert!(
            lean.get("$defs").is_none(),
            "single-use definitions inlined: {lean}"
        );
        assert_eq!(
            p["note"]["type"],
            json!(["string", "null"]),
            "required stays nullable"
        );
        let v = jsonschema::validator_for(&lean).unwrap();
        for ok in [
            json!({"email": "a", "note": null}),
            json!({"email": "a", "note": "n", "limit": 3, "mode": "Fast"}),
        ] {
            assert!(v.is_valid(&ok), "{ok}");
        }
        for bad in [
            json!({"note": null}),
            json!({"email": "a", "note": null, "limit": 0}),
            json!({"email": "a", "note": null, "mode": "Medium"}),
        ] {
            assert!(!v.is_valid(&bad), "{bad}");
        }
    }

    #[test]
    fn lean_output_schemas_accept_what_the_full_ones_do() {
        #[derive(JsonSchema, Serialize)]
        /// A role.
        struct Role {
            /// Its id.
            id: String,
            /// What it is for (a field named `description`).
            description: Option<String>,
        }
        #[derive(JsonSchema, Serialize)]
        struct Out {
            /// The roles.
            roles: Vec<Role>,
            main: Option<Role>,
            count: u32,
        }
        let full = schema_of::<Out>();
        let lean = lean_output(full.clone());
        let text = lean.to_string();
        assert!(text.len() < full.to_string().len(), "{text}");
        assert!(
            !text.contains("Its id") && !text.contains("A role"),
            "{text}"
        );
        assert!(
            lean["$defs"]["Role"]["properties"]["description"].is_object(),
            "{text}"
        );
        let (f, l) = (
            jsonschema::validator_for(&full).unwrap(),
            jsonschema::validator_for(&lean).unwrap(),
        );
        for v in [
            json!({"roles": [{"id": "r", "description": null}], "main": null, "count": 1}),
            json!({"roles": [], "main": {"id": "a", "description": "d"}, "count": 0}),
            json!({"roles": [{"id": 5}], "main": null, "count": 1}),
            json!({"roles": [], "count": -1}),
            json!({"main": null, "count": 1}),
        ] {
            assert_eq!(f.is_valid(&v), l.is_valid(&v), "{v} with {text}");
        }
        // a definition used once moves to its use
        #[derive(JsonSchema)]
        #[allow(dead_code)]
        struct One {
            only: Role,
        }
        let one = lean_output(schema_of::<One>());
        assert!(one.get("$defs").is_none(), "{one}");
        assert_eq!(one["properties"]["only"]["type"], "object", "{one}");
    }

    #[test]
    fn annotations_say_only_what_differs_from_the_defaults() {
        assert_eq!(
            Annotations::READ.to_value(None),
            json!({"readOnlyHint": true, "openWorldHint": false})
        );
        assert_eq!(
            Annotations::DESTROY.to_value(Some("Delete")),
            json!({"idempotentHint": true, "openWorldHint": false, "title": "Delete"})
        );
        assert_eq!(
            Annotations::CREATE.to_value(None),
            json!({"destructiveHint": false, "openWorldHint": false})
        );
    }

    #[test]
    fn param_headers_follow_the_rules() {
        let ok = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "opts": {"type": "object", "properties": {"n": {"type": "integer", "x-mcp-header": "N"}}}}});
        let h = param_headers(&ok).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].path, vec!["region".to_string()]);
        assert_eq!(h[1].header, "mcp-param-region");
        assert_eq!(h[0].path, vec!["opts".to_string(), "n".to_string()]);
        for bad in [
            json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": ""}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A B"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A"}, "b": {"type": "string", "x-mcp-header": "a"}}}),
            json!({"properties": {"a": {"type": "array", "items": {"type": "string", "x-mcp-header": "A"}}}}),
            json!({"anyOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}),
        ] {
            assert!(param_headers(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schema_is_an_object_schema() {
        let s = schema_of::<Args>();
        assert_eq!(s["type"], "object");
        assert_eq!(s["additionalProperties"], false);
        assert!(s.get("title").is_none());
    }
}

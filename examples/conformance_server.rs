//! MCP conformance fixture server: the tools, resources and prompts that
//! `@modelcontextprotocol/conformance` expects, served at `/mcp` by trex's own transport, auth and
//! sessions. It makes a scratch data dir (or uses `--data-dir`), an admin and an API key, and
//! prints `MCP_URL=…` and `MCP_TOKEN=…` on stdout before serving.
//!
//! ```sh
//! cargo run --example conformance_server -- --listen 127.0.0.1:39393
//! MCP_TOKEN=<printed token> bash ../shared/mcpkit/run-conformance.sh http://127.0.0.1:39393/mcp
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde_json::{Map, Value, json};
use trex::config::{Config, Overrides};
use trex::http::Mount;
use trex::mcp::protocol::RpcError;
use trex::mcp::server::{McpServer, Prompt, Resource, ResourceBody, ResourceTemplate};
use trex::mcp::tool::{Annotations, TaskSupport, Tool, ToolCtx, ToolOutput};
use trex::{App, ops, server};

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const WAV: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=";

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:39393")]
    listen: SocketAddr,
    /// Data dir (default: a fresh temporary one).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn no_args() -> Value {
    json!({"type": "object", "properties": {}, "additionalProperties": false})
}

fn fixed(name: &str, content: Vec<Value>) -> Tool {
    Tool::raw(
        name,
        &format!("Conformance fixture {name}"),
        no_args(),
        Annotations::READ,
        move |_c: ToolCtx, _a| {
            let content = content.clone();
            async move {
                ToolOutput::Ok {
                    content,
                    structured: None,
                }
            }
        },
    )
}

async fn elicit(ctx: &ToolCtx, message: &str, schema: Value) -> ToolOutput {
    if !ctx.call.client_can("elicitation") {
        return ToolOutput::Err("The client does not support elicitation".into());
    }
    match ctx
        .call
        .request_client(
            "elicitation/create",
            json!({"message": message, "requestedSchema": schema}),
        )
        .await
    {
        Ok(r) => ToolOutput::text(format!(
            "Elicitation completed: action={}, content={}",
            r.get("action").and_then(Value::as_str).unwrap_or("?"),
            r.get("content").cloned().unwrap_or(Value::Null)
        )),
        Err(e) => ToolOutput::Err(format!("Elicitation failed: {}", e.message)),
    }
}

/// An elicitation question for `ask`.
fn question(message: &str, field: &str, kind: &str) -> Value {
    json!({"message": message, "requestedSchema": {"type": "object",
        "properties": {field: {"type": kind}}, "required": [field]}})
}

fn sampling(text: &str, max: u32) -> Value {
    json!({"messages": [{"role": "user", "content": {"type": "text", "text": text}}], "maxTokens": max})
}

/// A fixture of the 2026-07-28 multi-round-trip scenarios: `run` asks through `ctx.call.ask`
/// and answers from what comes back; a pending question ends the run (the transport then sends
/// the questions).
fn asking<F, Fut>(name: &str, run: F) -> Tool
where
    F: Fn(ToolCtx) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<String, trex::mcp::protocol::RpcError>>
        + Send
        + 'static,
{
    let run = std::sync::Arc::new(run);
    Tool::raw(
        name,
        &format!("Conformance fixture {name}"),
        no_args(),
        Annotations::READ,
        move |c: ToolCtx, _a| {
            let run = run.clone();
            async move {
                match run(c).await {
                    Ok(t) => ToolOutput::text(t),
                    Err(e) => ToolOutput::Err(e.message),
                }
            }
        },
    )
}

/// The tasks-extension fixtures (the `tasks-*` scenarios name them), and a tool with a
/// parameter mirrored into a header (`http-custom-header-server-validation`).
fn task_fixtures(s: McpServer) -> McpServer {
    let obj = |props: Value, required: Value| json!({"type": "object", "properties": props, "required": required});
    s.tool(Tool::raw(
        "greet",
        "Says hello (always answered in the request)",
        obj(json!({"name": {"type": "string"}}), json!(["name"])),
        Annotations::READ,
        |_c, a: Value| async move {
            ToolOutput::text(format!("Hello, {}!", a["name"].as_str().unwrap_or("?")))
        },
    ))
    .tool(
        Tool::raw(
            "slow_compute",
            "Sleeps `seconds`, then answers (a task when the client supports tasks)",
            obj(json!({"seconds": {"type": "integer", "minimum": 0}, "label": {"type": "string"}}), json!(["seconds"])),
            Annotations::READ,
            |_c, a: Value| async move {
                let secs = a["seconds"].as_u64().unwrap_or(0).min(600);
                tokio::time::sleep(Duration::from_secs(secs)).await;
                ToolOutput::text(format!("Computed {} after {secs}s", a["label"].as_str().unwrap_or("")))
            },
        )
        .task(TaskSupport::Optional),
    )
    .tool(
        Tool::raw("failing_job", "Fails as a tool after a second (tasks only)", no_args(), Annotations::READ, |_c, _a| async move {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            ToolOutput::Err("The job failed".into())
        })
        .task(TaskSupport::Required),
    )
    .tool(
        Tool::raw("protocol_error_job", "Crashes (a protocol-level failure)", no_args(), Annotations::READ, |_c, _a| async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            panic!("protocol_error_job crashes on purpose");
        })
        .task(TaskSupport::Optional),
    )
    .tool(
        Tool::raw(
            "confirm_delete",
            "Asks the client to confirm, then answers",
            obj(json!({"filename": {"type": "string"}}), json!(["filename"])),
            Annotations::READ,
            |c: ToolCtx, a: Value| async move {
                let file = a["filename"].as_str().unwrap_or("").to_string();
                let q = question(&format!("Delete {file}?"), "confirm", "boolean");
                match c.call.ask("confirm_delete", "elicitation/create", q).await {
                    Ok(r) => ToolOutput::text(format!("{file}: {}", r["action"].as_str().unwrap_or("?"))),
                    Err(e) => ToolOutput::Err(e.message),
                }
            },
        )
        .task(TaskSupport::Optional),
    )
    .tool(
        Tool::raw("multi_input", "Asks two questions at once", no_args(), Annotations::READ, |c: ToolCtx, _a| async move {
            let (a, b) = tokio::join!(
                c.call.ask("first", "elicitation/create", question("First name?", "name", "string")),
                c.call.ask("second", "elicitation/create", question("Confirm?", "confirm", "boolean")),
            );
            match (a, b) {
                (Ok(a), Ok(b)) => ToolOutput::text(format!("{} {}", a["content"], b["content"])),
                (Err(e), _) | (_, Err(e)) => ToolOutput::Err(e.message),
            }
        })
        .task(TaskSupport::Optional),
    )
    .tool(
        Tool::raw("test_tool_with_task", "Asks a name in the request, then runs as a task", no_args(), Annotations::READ, |c: ToolCtx, _a| async move {
            let r = match c.call.ask("user_name", "elicitation/create", question("What is your name?", "name", "string")).await {
                Ok(r) => r,
                Err(e) => return ToolOutput::Err(e.message),
            };
            if let Err(e) = c.call.start_task().await {
                return ToolOutput::Err(e.message);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            ToolOutput::text(format!("Hello, {}!", r.pointer("/content/name").and_then(Value::as_str).unwrap_or("?")))
        })
        .task(TaskSupport::Deferred),
    )
    .tool(Tool::raw(
        "test_custom_header",
        "Echoes a region mirrored into the Mcp-Param-Region header",
        obj(json!({"region": {"type": "string", "x-mcp-header": "Region"}, "query": {"type": "string"}}), json!(["region"])),
        Annotations::READ,
        |_c, a: Value| async move { ToolOutput::text(format!("region {}", a["region"])) },
    ))
}

/// The multi-round-trip fixtures (each asks what its scenario names, under its key).
fn mrtr_fixtures(s: McpServer) -> McpServer {
    s.tool(asking(
        "test_input_required_result_elicitation",
        |c| async move {
            let r = c
                .call
                .ask(
                    "user_name",
                    "elicitation/create",
                    question("What is your name?", "name", "string"),
                )
                .await?;
            Ok(format!(
                "Hello, {}!",
                r.pointer("/content/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            ))
        },
    ))
    .tool(asking(
        "test_input_required_result_sampling",
        |c| async move {
            let r = c
                .call
                .ask(
                    "capital_question",
                    "sampling/createMessage",
                    sampling("What is the capital of France?", 100),
                )
                .await?;
            Ok(format!(
                "LLM said: {}",
                r.pointer("/content/text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            ))
        },
    ))
    .tool(asking(
        "test_input_required_result_list_roots",
        |c| async move {
            let r = c.call.ask("client_roots", "roots/list", json!({})).await?;
            Ok(format!(
                "Roots: {}",
                r.get("roots").cloned().unwrap_or(Value::Null)
            ))
        },
    ))
    .tool(asking(
        "test_input_required_result_request_state",
        |c| async move {
            c.call
                .ask(
                    "confirm",
                    "elicitation/create",
                    question("Please confirm", "ok", "boolean"),
                )
                .await?;
            let verified = c.call.mrtr.as_ref().is_some_and(|m| m.state_verified);
            Ok(if verified {
                "state-ok: confirmed".into()
            } else {
                "confirmed without state".into()
            })
        },
    ))
    .tool(asking(
        "test_input_required_result_multiple_inputs",
        |c| async move {
            // all three go out in one round: ask each before giving up
            let a = c
                .call
                .ask(
                    "user_name",
                    "elicitation/create",
                    question("What is your name?", "name", "string"),
                )
                .await;
            let b = c
                .call
                .ask(
                    "greeting",
                    "sampling/createMessage",
                    sampling("Generate a greeting", 50),
                )
                .await;
            let r = c.call.ask("client_roots", "roots/list", json!({})).await;
            let (a, b, r) = (a?, b?, r?);
            Ok(format!(
                "name={} greeting={} roots={}",
                a["content"], b["content"], r["roots"]
            ))
        },
    ))
    .tool(asking(
        "test_input_required_result_multi_round",
        |c| async move {
            let one = c
                .call
                .ask(
                    "step1",
                    "elicitation/create",
                    question("Step 1: What is your name?", "name", "string"),
                )
                .await?;
            let two = c
                .call
                .ask(
                    "step2",
                    "elicitation/create",
                    question("Step 2: What is your favorite color?", "color", "string"),
                )
                .await?;
            Ok(format!(
                "{} likes {}",
                one["content"]["name"], two["content"]["color"]
            ))
        },
    ))
    .tool(asking(
        "test_input_required_result_tampered_state",
        |c| async move {
            c.call
                .ask(
                    "confirm",
                    "elicitation/create",
                    question("Please confirm", "ok", "boolean"),
                )
                .await?;
            Ok("confirmed".into())
        },
    ))
    .tool(asking(
        "test_input_required_result_capabilities",
        |c| async move {
            // only what the client declared
            let mut got = Vec::new();
            let mut pending = None;
            if c.call.client_can("elicitation") {
                match c
                    .call
                    .ask(
                        "user_name",
                        "elicitation/create",
                        question("What is your name?", "name", "string"),
                    )
                    .await
                {
                    Ok(v) => got.push(v),
                    Err(e) => pending = Some(e),
                }
            }
            if c.call.client_can("sampling") {
                match c
                    .call
                    .ask(
                        "greeting",
                        "sampling/createMessage",
                        sampling("Generate a greeting", 50),
                    )
                    .await
                {
                    Ok(v) => got.push(v),
                    Err(e) => pending = Some(e),
                }
            }
            if let Some(e) = pending {
                return Err(e);
            }
            Ok(format!("{} answers", got.len()))
        },
    ))
    .tool(
        asking("test_streaming_elicitation", |c| async move {
            c.call.progress(0.0, Some(1.0), None);
            let r = c
                .call
                .ask(
                    "user_name",
                    "elicitation/create",
                    question("What is your name?", "name", "string"),
                )
                .await?;
            Ok(format!(
                "Hello, {}!",
                r.pointer("/content/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            ))
        })
        .streaming(),
    )
    .tool(asking("test_missing_capability", |c| async move {
        c.call
            .ask(
                "needs_sampling",
                "sampling/createMessage",
                sampling("Say hi", 10),
            )
            .await?;
        Ok("sampled".into())
    }))
    .tool(Tool::raw(
        "test_trigger_tool_change",
        "Tells listeners the tool list changed",
        no_args(),
        Annotations::READ,
        |c: ToolCtx, _a| async move {
            let n = c
                .app
                .sessions
                .notify_server("conformance", "notifications/tools/list_changed");
            ToolOutput::text(format!("told {n} session(s) and every listener"))
        },
    ))
    .prompt(Prompt {
        name: "test_input_required_result_prompt".into(),
        title: None,
        description: "A prompt that asks the user for its context first".into(),
        arguments: vec![],
        render: Arc::new(|_a: &Map<String, Value>, c| {
            let context = if c.mrtr.is_some() {
                let r = c.ask_stateless("user_context", "elicitation/create", question("What context should the prompt use?", "context", "string"))?;
                r.pointer("/content/context").and_then(Value::as_str).unwrap_or("").to_string()
            } else {
                "(no context asked in the session era)".into()
            };
            Ok(json!({"messages": [{"role": "user", "content": {"type": "text", "text": format!("Use this context: {context}")}}]}))
        }),
    })
    .tool(
        Tool::raw(
            "test_logging_tool",
            "Logs when asked to",
            no_args(),
            Annotations::READ,
            |c: ToolCtx, _a| async move {
                c.call.log("info", Some("conformance"), json!("a log line"));
                ToolOutput::text("logged (if the request set a log level)")
            },
        )
        .streaming(),
    )
}

fn fixtures() -> McpServer {
    let mut s = McpServer::new("conformance", "trex-conformance", "trex conformance fixtures")
        .tool(fixed("test_simple_text", vec![json!({"type": "text", "text": "This is a simple text response for testing."})]))
        .tool(fixed("test_image_content", vec![json!({"type": "image", "data": PNG, "mimeType": "image/png"})]))
        .tool(fixed("test_audio_content", vec![json!({"type": "audio", "data": WAV, "mimeType": "audio/wav"})]))
        .tool(fixed(
            "test_embedded_resource",
            vec![json!({"type": "resource", "resource": {"uri": "test://embedded-resource", "mimeType": "text/plain", "text": "This is an embedded resource content."}})],
        ))
        .tool(fixed(
            "test_multiple_content_types",
            vec![
                json!({"type": "text", "text": "Multiple content types test:"}),
                json!({"type": "image", "data": PNG, "mimeType": "image/png"}),
                json!({"type": "resource", "resource": {"uri": "test://mixed-content-resource", "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}"}}),
            ],
        ))
        .tool(Tool::raw("test_error_handling", "Always fails", no_args(), Annotations::READ, |_c, _a| async {
            ToolOutput::Err("This tool intentionally returns an error for testing".into())
        }))
        .tool(
            Tool::raw("test_tool_with_logging", "Logs three messages", no_args(), Annotations::READ, |c: ToolCtx, _a| async move {
                for (i, m) in ["Tool execution started", "Tool processing data", "Tool execution completed"].iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    c.call.log("info", Some("conformance"), json!(m));
                }
                ToolOutput::text("Tool with logging executed successfully")
            })
            .streaming(),
        )
        .tool(
            Tool::raw("test_tool_with_progress", "Reports progress", no_args(), Annotations::READ, |c: ToolCtx, _a| async move {
                for (i, p) in [0.0, 50.0, 100.0].iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    c.call.progress(*p, Some(100.0), None);
                }
                ToolOutput::text("Tool with progress executed successfully")
            })
            .streaming(),
        )
        .tool(
            Tool::raw(
                "test_sampling",
                "Asks the client's LLM",
                json!({"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}),
                Annotations::READ,
                |c: ToolCtx, a: Value| async move {
                    if !c.call.client_can("sampling") {
                        return ToolOutput::Err("The client does not support sampling".into());
                    }
                    let prompt = a.get("prompt").and_then(Value::as_str).unwrap_or("").to_string();
                    let params = json!({"messages": [{"role": "user", "content": {"type": "text", "text": prompt}}], "maxTokens": 100});
                    match c.call.request_client("sampling/createMessage", params).await {
                        Ok(r) => ToolOutput::text(format!(
                            "LLM response: {}",
                            r.pointer("/content/text").and_then(Value::as_str).unwrap_or("")
                        )),
                        Err(e) => ToolOutput::Err(format!("Sampling failed: {}", e.message)),
                    }
                },
            )
            .streaming(),
        )
        .tool(
            Tool::raw(
                "test_elicitation",
                "Asks the user",
                json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}),
                Annotations::READ,
                |c: ToolCtx, a: Value| async move {
                    let msg = a.get("message").and_then(Value::as_str).unwrap_or("").to_string();
                    let schema = json!({"type": "object", "properties": {
                        "username": {"type": "string", "description": "User's response"},
                        "email": {"type": "string", "description": "User's email address"}},
                        "required": ["username", "email"]});
                    elicit(&c, &msg, schema).await
                },
            )
            .streaming(),
        )
        .tool(
            Tool::raw("test_elicitation_sep1034_defaults", "Elicitation with defaults", no_args(), Annotations::READ, |c: ToolCtx, _a| async move {
                let schema = json!({"type": "object", "properties": {
                    "name": {"type": "string", "default": "John Doe"},
                    "age": {"type": "integer", "default": 30},
                    "score": {"type": "number", "default": 95.5},
                    "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                    "verified": {"type": "boolean", "default": true}}});
                elicit(&c, "Please review and update the form fields with defaults", schema).await
            })
            .streaming(),
        )
        .tool(
            Tool::raw("test_elicitation_sep1330_enums", "Elicitation with enums", no_args(), Annotations::READ, |c: ToolCtx, _a| async move {
                let schema = json!({"type": "object", "properties": {
                    "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {"type": "string", "oneOf": [
                        {"const": "value1", "title": "First Option"}, {"const": "value2", "title": "Second Option"}, {"const": "value3", "title": "Third Option"}]},
                    "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]},
                    "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                    "titledMulti": {"type": "array", "items": {"anyOf": [
                        {"const": "value1", "title": "First Choice"}, {"const": "value2", "title": "Second Choice"}, {"const": "value3", "title": "Third Choice"}]}}}});
                elicit(&c, "Please select options from the enum fields", schema).await
            })
            .streaming(),
        )
        .tool(Tool::raw(
            "json_schema_2020_12_tool",
            "A tool whose input schema uses JSON Schema 2020-12 keywords",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {"address": {"$anchor": "addressDef", "type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
                "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                    "contactMethod": {"type": "string", "enum": ["phone", "email"]}, "phone": {"type": "string"}, "email": {"type": "string"}},
                "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
                "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
                "then": {"required": ["phone"]},
                "else": {"required": ["email"]},
                "additionalProperties": false
            }),
            Annotations::READ,
            |_c, a: Value| async move { ToolOutput::text(format!("Received: {a}")) },
        ))
        .tool(
            Tool::raw("test_reconnection", "Closes its SSE stream mid-call, then answers", no_args(), Annotations::READ, |c: ToolCtx, _a| async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                c.call.close_connection();
                tokio::time::sleep(Duration::from_millis(400)).await;
                ToolOutput::text("Reconnection test completed")
            })
            .streaming(),
        )
        .resource(Resource {
            uri: "test://static-text".into(),
            name: "static-text".into(),
            title: None,
            description: Some("A static text resource".into()),
            mime_type: "text/plain".into(),
            body: ResourceBody::Text("This is the content of the static text resource.".into()),
        })
        .resource(Resource {
            uri: "test://static-binary".into(),
            name: "static-binary".into(),
            title: None,
            description: Some("A static binary resource".into()),
            mime_type: "image/png".into(),
            body: ResourceBody::Blob(PNG.into()),
        })
        .resource(Resource {
            uri: "test://watched-resource".into(),
            name: "watched-resource".into(),
            title: None,
            description: Some("A resource that can be subscribed to".into()),
            mime_type: "text/plain".into(),
            body: ResourceBody::Text("Watched resource content".into()),
        })
        .template(ResourceTemplate {
            uri_template: "test://template/{id}/data".into(),
            name: "template".into(),
            description: Some("A templated resource".into()),
            mime_type: Some("application/json".into()),
            read: Arc::new(|uri: &str| {
                let id = uri.strip_prefix("test://template/")?.strip_suffix("/data")?;
                if id.is_empty() || id.contains('/') {
                    return None;
                }
                let text = json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")}).to_string();
                Some(vec![json!({"uri": uri, "mimeType": "application/json", "text": text})])
            }),
        })
        .prompt(Prompt {
            name: "test_simple_prompt".into(),
            title: None,
            description: "A simple prompt".into(),
            arguments: vec![],
            render: Arc::new(|_a, _c| {
                Ok(json!({"messages": [{"role": "user", "content": {"type": "text", "text": "This is a simple prompt for testing."}}]}))
            }),
        })
        .prompt(Prompt {
            name: "test_prompt_with_arguments".into(),
            title: None,
            description: "A prompt with arguments".into(),
            arguments: vec![("arg1".into(), "First test argument".into(), true), ("arg2".into(), "Second test argument".into(), true)],
            render: Arc::new(|a: &Map<String, Value>, _c| {
                let g = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                Ok(json!({"messages": [{"role": "user", "content": {"type": "text",
                    "text": format!("Prompt with arguments: arg1='{}', arg2='{}'", g("arg1"), g("arg2"))}}]}))
            }),
        })
        .prompt(Prompt {
            name: "test_prompt_with_embedded_resource".into(),
            title: None,
            description: "A prompt with an embedded resource".into(),
            arguments: vec![("resourceUri".into(), "URI of the resource to embed".into(), true)],
            render: Arc::new(|a: &Map<String, Value>, _c| {
                let uri = a.get("resourceUri").and_then(Value::as_str).unwrap_or("test://example-resource");
                Ok(json!({"messages": [
                    {"role": "user", "content": {"type": "resource", "resource": {"uri": uri, "mimeType": "text/plain", "text": "Embedded resource content for testing."}}},
                    {"role": "user", "content": {"type": "text", "text": "Please process the embedded resource above."}}]}))
            }),
        })
        .prompt(Prompt {
            name: "test_prompt_with_image".into(),
            title: None,
            description: "A prompt with an image".into(),
            arguments: vec![],
            render: Arc::new(|_a, _c| {
                Ok(json!({"messages": [
                    {"role": "user", "content": {"type": "image", "data": PNG, "mimeType": "image/png"}},
                    {"role": "user", "content": {"type": "text", "text": "Please analyze the image above."}}]}))
            }),
        });
    s.subscriptions = true;
    s.completer = Some(Arc::new(|p: &Value| {
        let name = p.pointer("/ref/name").and_then(Value::as_str).unwrap_or("");
        let kind = p.pointer("/ref/type").and_then(Value::as_str).unwrap_or("");
        if kind == "ref/prompt"
            && name != "test_prompt_with_arguments"
            && name != "test_simple_prompt"
            && name != "test_prompt_with_embedded_resource"
            && name != "test_prompt_with_image"
        {
            return Err(RpcError::invalid_params(format!("Unknown prompt: {name}")));
        }
        let value = p
            .pointer("/argument/value")
            .and_then(Value::as_str)
            .unwrap_or("");
        let values: Vec<&str> = ["paris", "park", "party"]
            .into_iter()
            .filter(|v| v.starts_with(value))
            .collect();
        Ok(json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}))
    }));
    s
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let tmp;
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => {
            tmp = std::env::temp_dir().join(format!("trex-conformance-{}", std::process::id()));
            tmp
        }
    };
    let mut config = Config::load(
        None,
        std::iter::empty(),
        &Overrides {
            data_dir: Some(data_dir),
            listen: Some(args.listen),
        },
    )?;
    // conformance scenarios never send DELETE; keep room for many runs
    config.mcp.max_sessions = 1000;
    config.mcp.max_sessions_per_user = 1000;
    let app = App::open(config).await?;
    const EMAIL: &str = "conformance@trex.local";
    let key =
        match ops::users::bootstrap_admin(&app.store, "Conformance", EMAIL, None, "conformance")
            .await?
        {
            Some((_, k)) => k,
            None => {
                let cli = ops::Actor::cli();
                ops::keys::create(&app, &cli, EMAIL, "conformance", None, "expiresAt", None).await?
            }
        };
    let mount = Mount {
        segments: vec!["mcp".into()],
        server: Arc::new(task_fixtures(mrtr_fixtures(fixtures()))),
    };
    let catalogue = Arc::new(trex::servers::Catalogue::new());
    let running = server::start(app.clone(), catalogue, vec![mount]).await?;
    println!("MCP_URL=http://{}/mcp", running.addr);
    println!("MCP_TOKEN={}", key.key);
    std::io::stdout().flush()?;
    let stop = app.shutdown.clone();
    tokio::spawn(async move {
        server::signal().await;
        stop.cancel();
    });
    running.wait().await;
    Ok(())
}

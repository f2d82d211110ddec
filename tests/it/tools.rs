//! The first admin tools through `/trex/mcp`: schemas, annotations, validation messages naming
//! the field, pagination, audit, and the plugin guide resource.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::common::{Client, TestServer};

async fn ready() -> (TestServer, Client) {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    (s, c)
}

#[tokio::test]
async fn every_tool_has_schemas_and_truthful_annotations() {
    let (s, lean) = ready().await;
    // the default list is lean: no output schemas (results still carry structuredContent)
    let default = lean.rpc("tools/list", json!({})).await["result"]["tools"].clone();
    assert!(
        default
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("outputSchema").is_none()),
        "{default}"
    );
    let mut c = Client::new(&format!("{}?outputSchemas=true", s.url()), Some(&s.key));
    c.initialize().await;
    let tools = c.rpc("tools/list", json!({})).await["result"]["tools"].clone();
    assert_eq!(
        tools.as_array().unwrap().len(),
        default.as_array().unwrap().len()
    );
    // a bad value is refused with 400, not ignored
    let bad = Client::new(&format!("{}?outputSchemas=maybe", s.url()), Some(&s.key));
    let r = bad
        .post()
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let names: HashSet<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for n in [
        "user-list",
        "user-get",
        "user-create",
        "api-key-list",
        "api-key-create",
        "api-key-revoke",
    ] {
        assert!(names.contains(n), "missing {n}");
    }
    for t in tools.as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        assert!(
            t["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}"
        );
        assert!(t["title"].is_string(), "{name}");
        assert_eq!(t["inputSchema"]["type"], "object", "{name}");
        assert_eq!(t["inputSchema"]["additionalProperties"], false, "{name}");
        assert_eq!(t["outputSchema"]["type"], "object", "{name}");
        // every property schema is an object (validators refuse a bare `true`)
        for schema in ["inputSchema", "outputSchema"] {
            if let Some(props) = t[schema]["properties"].as_object() {
                for (p, v) in props {
                    assert!(v.is_object(), "{name} {schema}.{p} is {v}");
                }
            }
        }
        // a hint left out has the spec's default (read-only false, destructive true,
        // idempotent false, open-world true); only those that differ are sent
        let a = &t["annotations"];
        let hint = |h: &str, default: bool| {
            let v = &a[h];
            assert!(v.is_null() || v.is_boolean(), "{name}: {h} is {v}");
            assert_ne!(
                v,
                &json!(default),
                "{name}: {h} sent with its default value"
            );
            v.as_bool().unwrap_or(default)
        };
        let read =
            name.contains("-list") || name.contains("-get") || name == "database-test-connection";
        assert_eq!(hint("readOnlyHint", false), read, "{name}");
        let destroys = name.ends_with("-revoke")
            || name.ends_with("-delete")
            || name.ends_with("-remove")
            || name.ends_with("-uninstall")
            || name == "plugin-function-invoke"
            || name == "trexdb-execute-sql"
            || name == "migration-run"
            || name == "etl-delete-pipeline";
        if read {
            // meaningless for a read-only tool, so not sent
            assert!(
                a.get("destructiveHint").is_none() && a.get("idempotentHint").is_none(),
                "{name}: {a}"
            );
        } else {
            assert_eq!(hint("destructiveHint", true), destroys, "{name}");
            hint("idempotentHint", false);
        }
        assert!(
            a.get("title").is_none(),
            "{name}: the title is the tool's own"
        );
        // only the tools that reach external servers (registered PostgreSQL databases) say so
        assert_eq!(
            hint("openWorldHint", true),
            name == "database-test-connection"
                || name.starts_with("migration-")
                || name == "etl-start-pipeline"
                || name == "etl-delete-pipeline",
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_url_may_ask_for_a_subset_of_the_tools() {
    let s = TestServer::start().await;
    let mut c = Client::new(
        &format!("{}?tools=user-*,trex:audit-list", s.url()),
        Some(&s.key),
    );
    c.initialize().await;
    let tools = c.rpc("tools/list", json!({})).await["result"]["tools"].clone();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"user-get") && names.contains(&"audit-list"),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("user-") || *n == "audit-list"),
        "{names:?}"
    );
    // a tool outside the view is unknown here; one inside works
    let r = c
        .rpc("tools/call", json!({"name": "role-list", "arguments": {}}))
        .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    c.call_ok("user-list", json!({})).await;
    // the same session without the view sees everything
    let all = s.client();
    let mut all = all;
    all.initialize().await;
    let n = all.rpc("tools/list", json!({})).await["result"]["tools"]
        .as_array()
        .unwrap()
        .len();
    assert!(n > names.len() + 20, "{n} vs {}", names.len());
    // a view that is not a list of globs is refused, in JSON
    let r = reqwest::Client::new()
        .post(format!("{}?tools=%3Cscript%3E", s.url()))
        .headers(crate::common::post_headers())
        .header("authorization", format!("Bearer {}", s.key))
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let b: Value = r.json().await.unwrap();
    assert!(
        b["error"]["message"].as_str().unwrap().contains("tools"),
        "{b}"
    );
}

#[tokio::test]
async fn tools_list_paginates() {
    let s = TestServer::start_with(|c| c.mcp.tools_page_size = 2, |s| s).await;
    let mut c = s.client();
    c.initialize().await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let params = match &cursor {
            Some(cur) => json!({"cursor": cur}),
            None => json!({}),
        };
        let r = c.rpc("tools/list", params).await["result"].clone();
        let page = r["tools"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|t| t["name"].as_str().unwrap().to_string()));
        match r["nextCursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    let all = trex::tools::admin_server().tool_table().list.len();
    assert!(all > 6);
    assert_eq!(seen.len(), all, "pages must cover every tool once");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), all);
    assert_eq!(
        c.rpc("tools/list", json!({"cursor": "bogus"})).await["error"]["code"],
        -32602
    );
}

#[tokio::test]
async fn user_create_validates_and_names_the_field() {
    let (s, c) = ready().await;
    for (args, field) in [
        (json!({"name": "A", "email": "not-an-email"}), "email"),
        (json!({"email": "a@example.com"}), "name"),
        (json!({"name": " ", "email": "a@example.com"}), "name"),
        (
            json!({"name": "A", "email": "a@example.com", "role": "root"}),
            "role",
        ),
        (
            json!({"name": "A", "email": "a@example.com", "password": "short"}),
            "password",
        ),
        (
            json!({"name": "A", "email": "a@example.com", "colour": "red"}),
            "colour",
        ),
        (json!({"name": 5, "email": "a@example.com"}), "name"),
    ] {
        let err = c.call_err("user-create", args.clone()).await;
        assert!(err.contains(field), "{args}: {err}");
    }
    let u = c.call_ok("user-create", json!({"name": "Ann", "email": "Ann@Example.com", "password": "correct horse", "role": "admin"})).await;
    assert_eq!(u["role"], "admin");
    assert!(u.get("passwordHash").is_none() && u.get("password_hash").is_none());
    let dup = c
        .call_err(
            "user-create",
            json!({"name": "Ann 2", "email": "ann@example.com"}),
        )
        .await;
    assert_eq!(dup, "A user with email 'ann@example.com' already exists");
    let id = u["id"].as_str().unwrap().to_string();
    let hash = s
        .app()
        .store
        .run(move |c| trex::store::users::password_hash(c, &id))
        .await
        .unwrap()
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    // nothing was created by the failed calls
    let all = c.call_ok("user-list", json!({})).await;
    assert_eq!(all["users"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn user_list_searches_literally_and_paginates() {
    let (_s, c) = ready().await;
    for (n, e) in [
        ("Percent 100%", "p@example.com"),
        ("Under_score", "u@example.com"),
        ("Plain", "x@example.com"),
    ] {
        c.call_ok("user-create", json!({"name": n, "email": e}))
            .await;
    }
    let r = c.call_ok("user-list", json!({"search": "%"})).await;
    let names: Vec<&str> = r["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Percent 100%"]);
    let r = c.call_ok("user-list", json!({"search": "_"})).await;
    assert_eq!(r["users"].as_array().unwrap().len(), 1);
    let r = c
        .call_ok("user-list", json!({"search": "EXAMPLE.COM"}))
        .await;
    assert_eq!(r["users"].as_array().unwrap().len(), 4);

    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let mut args = json!({"limit": 1});
        if let Some(cur) = &cursor {
            args["cursor"] = json!(cur);
        }
        let p = c.call_ok("user-list", args).await;
        assert!(p["users"].as_array().unwrap().len() <= 1);
        ids.extend(
            p["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_string()),
        );
        match p["nextCursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(ids.len(), 4);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 4);
    assert!(
        c.call_err("user-list", json!({"limit": 0}))
            .await
            .contains("limit")
    );
    assert!(
        c.call_err("user-list", json!({"limit": 1001}))
            .await
            .contains("limit")
    );
    assert!(
        c.call_err("user-list", json!({"cursor": "zz"}))
            .await
            .contains("cursor")
    );
}

#[tokio::test]
async fn user_get_finds_or_says_not_found() {
    let (s, c) = ready().await;
    let u = c.call_ok("user-get", json!({"userId": s.admin_id})).await;
    assert_eq!(u["email"], "admin@example.com");
    assert_eq!(
        c.call_err("user-get", json!({"userId": "nope"})).await,
        "User not found"
    );
    assert!(c.call_err("user-get", json!({})).await.contains("userId"));
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_without_secrets_and_revoked_once() {
    let (s, c) = ready().await;
    let k = c
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "ci", "expiresAt": "2099-01-01T00:00:00Z"}),
        )
        .await;
    let key = k["key"].as_str().unwrap();
    assert!(trex::auth::keys::well_formed(key));
    assert_eq!(k["expiresAt"], "2099-01-01T00:00:00.000Z");
    let list = c.call("api-key-list", json!({})).await;
    let text = list.to_string();
    assert!(
        !text.contains(key),
        "a listed key must never include the key"
    );
    let keys = list["structuredContent"]["keys"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(keys.len(), 2);
    let ci = keys.iter().find(|x| x["name"] == "ci").unwrap();
    assert_eq!(ci["keyPrefix"], &key[..13]);
    assert_eq!(ci["userEmail"], "admin@example.com");

    for (args, want) in [
        (
            json!({"userId": s.admin_id, "name": "x", "expiresAt": "tomorrow"}),
            "expiresAt",
        ),
        (
            json!({"userId": s.admin_id, "name": "x", "expiresAt": "2001-01-01T00:00:00Z"}),
            "expiresAt",
        ),
        (json!({"userId": "ghost", "name": "x"}), "User not found"),
        (json!({"userId": s.admin_id, "name": ""}), "name"),
    ] {
        let err = c.call_err("api-key-create", args.clone()).await;
        assert!(err.contains(want), "{args}: {err}");
    }
    let r = c.call_ok("api-key-revoke", json!({"keyId": k["id"]})).await;
    assert_eq!(
        r["message"],
        format!("API key 'ci' ({}...) revoked", &key[..13])
    );
    assert_eq!(
        c.call_err("api-key-revoke", json!({"keyId": k["id"]}))
            .await,
        "API key not found or already revoked"
    );
    let page = c.call_ok("api-key-list", json!({"limit": 1})).await;
    assert_eq!(page["keys"].as_array().unwrap().len(), 1);
    assert!(page["nextCursor"].is_string());
}

#[tokio::test]
async fn mutating_calls_are_audited_with_secrets_redacted() {
    let (s, c) = ready().await;
    c.call_ok(
        "user-create",
        json!({"name": "Bob", "email": "bob@example.com", "password": "hunter2hunter2"}),
    )
    .await;
    c.call_err(
        "user-create",
        json!({"name": "Bob", "email": "bob@example.com"}),
    )
    .await;
    c.call_ok("user-list", json!({})).await;
    let rows: Vec<(String, String, String)> = s.store(|c| {
        c.query_map(
            "SELECT tool, arguments, outcome FROM audit_log ORDER BY id",
            (),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    });
    assert_eq!(rows.len(), 2, "read-only calls are not audited: {rows:?}");
    assert_eq!(rows[0].0, "user-create");
    assert_eq!(rows[0].2, "ok");
    assert!(
        !rows[0].1.contains("hunter2"),
        "password leaked into the audit log"
    );
    assert!(rows[0].1.contains("[redacted]"));
    assert_eq!(rows[1].2, "error");
}

#[tokio::test]
async fn the_plugin_guide_resource_reads() {
    let (_s, c) = ready().await;
    let list = c.rpc("resources/list", json!({})).await;
    let r = &list["result"]["resources"][0];
    assert_eq!(r["uri"], "trex://plugin-development-guide");
    assert_eq!(r["mimeType"], "text/markdown");
    let read = c
        .rpc(
            "resources/read",
            json!({"uri": "trex://plugin-development-guide"}),
        )
        .await;
    // the guide documents the real format, with the example plugin the tests install
    let text = read["result"]["contents"][0]["text"].as_str().unwrap();
    for needle in [
        "package.json",
        "examples/plugin-hello",
        "TREX_PLUGIN_DB",
        "hello-greet",
        "/plugins/hello/fn/greet",
        "npm pack",
    ] {
        assert!(text.contains(needle), "the guide lacks {needle}");
    }
    assert!(!text.contains("Placeholder"));
    let missing = c.rpc("resources/read", json!({"uri": "trex://nope"})).await;
    assert_eq!(missing["error"]["code"], -32002);
    assert_eq!(
        c.rpc("resources/templates/list", json!({})).await["result"]["resourceTemplates"],
        json!([])
    );
    assert_eq!(
        c.rpc("prompts/list", json!({})).await["error"]["code"],
        -32601,
        "no prompts offered"
    );
    let _: Value = c.rpc("ping", json!({})).await;
}

/// Every read tool that needs no arguments is called once on a store with data in it, so the
/// debug build's check of each result against the tool's published `outputSchema` (see
/// `mcp::tool::OutputCheck`) runs for all of them; a result the schema does not describe is an
/// error here. The schemas themselves are lean: no `$schema`, no non-standard `format`.
#[tokio::test]
async fn read_tools_return_what_their_output_schemas_say() {
    let s = TestServer::start().await;
    let mut c = Client::new(&format!("{}?outputSchemas=true", s.url()), Some(&s.key));
    c.initialize().await;
    c.call_ok(
        "user-create",
        json!({"name": "Schema", "email": "schema@example.com", "password": "pass-word-1"}),
    )
    .await;
    c.call_ok("role-create", json!({"name": "auditors"})).await;
    let dir = s.data_dir().join("databases");
    std::fs::create_dir_all(&dir).unwrap();
    rusqlite::Connection::open(dir.join("s.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    c.call_ok(
        "database-create",
        json!({"id": "s", "dialect": "sqlite", "databaseName": "s.db"}),
    )
    .await;
    let tools = c.rpc("tools/list", json!({})).await["result"]["tools"].clone();
    let mut called = 0;
    for t in tools.as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let text = t.to_string();
        assert!(
            !text.contains("json-schema.org/draft"),
            "{name} repeats $schema"
        );
        for f in ["uint", "int32", "int64", "double", "float"] {
            assert!(
                !text.contains(&format!("\"format\":\"{f}")),
                "{name} has format {f}"
            );
        }
        let needs_args = t["inputSchema"]["required"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        if t["annotations"]["readOnlyHint"] == true && !needs_args {
            let r = c.call(name, json!({})).await;
            assert_eq!(r["isError"], false, "{name}: {r}");
            // the published schema, checked here as a client would check it
            let v = jsonschema::validator_for(&t["outputSchema"])
                .unwrap_or_else(|e| panic!("{name}: its outputSchema does not compile: {e}"));
            if let Err(e) = v.validate(&r["structuredContent"]) {
                panic!("{name}: the result does not follow its outputSchema: {e}: {r}");
            }
            called += 1;
        }
    }
    assert!(called >= 15, "only {called} read tools called");
}

/// The admin server's tool list is lean: at most 40% of the 1,445 bytes per tool it took before
/// output schemas left the default list, descriptions stopped repeating the schemas and defaults
/// moved into them (issue 17). A tool added with a long description, or a schema that repeats
/// itself, shows here first.
#[tokio::test]
async fn the_default_tool_list_stays_within_40_percent_of_its_old_size() {
    let s = TestServer::start().await;
    let mut c = s.client();
    c.initialize().await;
    let r = c.rpc("tools/list", json!({})).await;
    let n = r["result"]["tools"].as_array().unwrap().len();
    assert!(r["result"]["nextCursor"].is_null(), "one page");
    let bytes = r["result"].to_string().len();
    let per_tool = bytes as f64 / n as f64;
    assert!(
        per_tool <= 0.40 * 1445.0,
        "tools/list is {bytes} B for {n} tools = {per_tool:.0} B/tool, over 578 (40% of 1,445)"
    );
}

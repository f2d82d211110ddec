//! External databases, the trexdb engine and the per-database MCP servers, including the bad
//! input that must be refused. PostgreSQL tests use the server on 127.0.0.1:5432 when it is
//! reachable and print a SKIP line when it is not (CI starts it).

use serde_json::{Value, json};

use crate::common::{Client, TestServer};

async fn ready() -> (TestServer, Client) {
    let s = TestServer::start_with(|c| c.engine.query_timeout_secs = 1, |s| s).await;
    let mut c = s.client();
    c.initialize().await;
    (s, c)
}

/// A key allowed to run Dangerous SQL.
async fn dangerous_client(s: &TestServer, c: &Client) -> Client {
    let k = c
        .call_ok(
            "api-key-create",
            json!({"userId": s.admin_id, "name": "ddl", "scopes": {"dangerousSql": true}}),
        )
        .await;
    let mut d = Client::new(&s.url(), Some(k["key"].as_str().unwrap()));
    d.initialize().await;
    d
}

/// Creates `<data_dir>/databases/<file>` with a table `items(id, name)` of `n` rows.
fn sqlite_fixture(s: &TestServer, file: &str, n: i64) {
    let dir = s.data_dir().join("databases");
    std::fs::create_dir_all(&dir).unwrap();
    let c = rusqlite::Connection::open(dir.join(file)).unwrap();
    c.execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); CREATE INDEX items_name ON items(name); CREATE VIEW v AS SELECT name FROM items;").unwrap();
    for i in 0..n {
        c.execute(
            "INSERT INTO items (name) VALUES (?1)",
            [format!("item {i}")],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn database_registry_validates_every_field() {
    let (s, c) = ready().await;
    for (args, field) in [
        (
            json!({"id": "bad-id", "host": "h", "databaseName": "d"}),
            "id",
        ),
        (
            json!({"id": "x'; DROP TABLE users; --", "host": "h", "databaseName": "d"}),
            "id",
        ),
        (
            json!({"id": "main", "dialect": "sqlite", "databaseName": "m.db"}),
            "id",
        ),
        (json!({"id": "pg", "databaseName": "d"}), "host"),
        (
            json!({"id": "pg", "host": "h", "port": 70000, "databaseName": "d"}),
            "port",
        ),
        (
            json!({"id": "sq", "dialect": "sqlite", "databaseName": "../trex.db"}),
            "databaseName",
        ),
        (
            json!({"id": "sq", "dialect": "sqlite", "databaseName": "/etc/passwd"}),
            "databaseName",
        ),
        (
            json!({"id": "sq", "dialect": "sqlite", "databaseName": s.data_dir().join("trex.db").to_str().unwrap()}),
            "databaseName",
        ),
        (
            json!({"id": "sq", "dialect": "mysql", "databaseName": "x"}),
            "dialect",
        ),
    ] {
        let e = c.call_err("database-create", args.clone()).await;
        assert!(e.contains(field), "{args}: {e}");
    }
    let d = c.call_ok("database-create", json!({"id": "sales", "host": "127.0.0.1", "databaseName": "test", "description": "'; DROP TABLE databases; --"})).await;
    assert_eq!(d["port"], 5432);
    assert_eq!(d["dialect"], "postgresql");
    assert_eq!(d["enabled"], true);
    assert_eq!(
        c.call_err(
            "database-create",
            json!({"id": "sales", "host": "h", "databaseName": "d"})
        )
        .await,
        "Database 'sales' already exists"
    );
    let l = c
        .call_ok("database-list", json!({"search": "DROP TABLE"}))
        .await;
    assert_eq!(
        l["databases"][0]["description"], "'; DROP TABLE databases; --",
        "stored literally"
    );
    assert_eq!(
        c.call_ok("database-list", json!({"search": "%"})).await["databases"],
        json!([])
    );
    assert_eq!(
        c.call_err("database-update", json!({"id": "sales"})).await,
        "No fields to update"
    );
    assert_eq!(
        c.call_err("database-update", json!({"id": "nope", "port": 1}))
            .await,
        "Database not found"
    );
    let u = c
        .call_ok(
            "database-update",
            json!({"id": "sales", "port": 5433, "enabled": false}),
        )
        .await;
    assert_eq!(u["port"], 5433);
    assert_eq!(
        c.call_ok("database-delete", json!({"id": "sales"})).await["message"],
        "Database 'sales' deleted"
    );
    assert_eq!(
        c.call_err("database-delete", json!({"id": "sales"})).await,
        "Database not found"
    );
}

#[tokio::test]
async fn credentials_are_sealed_listed_without_passwords_and_saved_without_scopes() {
    let (s, c) = ready().await;
    c.call_ok(
        "database-create",
        json!({"id": "pgdb", "host": "127.0.0.1", "databaseName": "test"}),
    )
    .await;
    let secret = "db-password-93ab1";
    let r = c
        .call_ok(
            "database-credential-save",
            json!({"databaseId": "pgdb", "username": "postgres", "password": secret}),
        )
        .await;
    assert_eq!(r["message"], "Credentials saved for database 'pgdb'");
    let list = c
        .call("database-credential-list", json!({"databaseId": "pgdb"}))
        .await;
    assert!(!list.to_string().contains(secret));
    let creds = list["structuredContent"]["credentials"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        creds.len(),
        1,
        "a credential without scopes is saved (trexsql's STRICT bug)"
    );
    assert_eq!(creds[0]["username"], "postgres");
    // saving again for the same user replaces, not duplicates
    c.call_ok("database-credential-save", json!({"databaseId": "pgdb", "username": "postgres", "password": secret, "userScope": "u", "serviceScope": "s"})).await;
    let creds = c
        .call_ok("database-credential-list", json!({"databaseId": "pgdb"}))
        .await["credentials"]
        .clone();
    assert_eq!(creds.as_array().unwrap().len(), 1);
    assert_eq!(creds[0]["userScope"], "u");
    assert_eq!(
        c.call_err(
            "database-credential-save",
            json!({"databaseId": "nope", "username": "u", "password": "p"})
        )
        .await,
        "Database not found"
    );
    let bytes = s.store_bytes();
    assert!(
        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "password in clear text"
    );
    let audit = c
        .call_ok("audit-list", json!({"tool": "database-credential-save"}))
        .await;
    assert!(!audit.to_string().contains(secret));
    // pointing the database elsewhere drops its credentials (no password to a new target)
    c.call_ok("database-update", json!({"id": "pgdb", "port": 6543}))
        .await;
    let left = c
        .call_ok("database-credential-list", json!({"databaseId": "pgdb"}))
        .await;
    assert_eq!(left["credentials"], json!([]));
    c.call_ok(
        "database-credential-save",
        json!({"databaseId": "pgdb", "username": "postgres", "password": secret}),
    )
    .await;
    let creds = c
        .call_ok("database-credential-list", json!({"databaseId": "pgdb"}))
        .await["credentials"]
        .clone();
    assert_eq!(
        c.call_ok(
            "database-credential-delete",
            json!({"credentialId": creds[0]["id"]})
        )
        .await["message"],
        "Credential deleted"
    );
    assert_eq!(
        c.call_err(
            "database-credential-delete",
            json!({"credentialId": creds[0]["id"]})
        )
        .await,
        "Credential not found"
    );
}

#[tokio::test]
async fn sqlite_connection_test_and_trexdb_catalog() {
    let (s, c) = ready().await;
    sqlite_fixture(&s, "shop.db", 3);
    c.call_ok(
        "database-create",
        json!({"id": "shop", "dialect": "sqlite", "databaseName": "shop.db"}),
    )
    .await;
    let t = c
        .call_ok("database-test-connection", json!({"databaseId": "shop"}))
        .await;
    assert_eq!(t["message"], "Connection successful");
    assert!(t["serverVersion"].as_str().unwrap().starts_with("3."));
    c.call_ok(
        "database-create",
        json!({"id": "ghost", "dialect": "sqlite", "databaseName": "ghost.db"}),
    )
    .await;
    assert!(
        c.call_err("database-test-connection", json!({"databaseId": "ghost"}))
            .await
            .contains("Connection failed")
    );
    c.call_ok("database-update", json!({"id": "ghost", "enabled": false}))
        .await;
    assert_eq!(
        c.call_err("database-test-connection", json!({"databaseId": "ghost"}))
            .await,
        "Database 'ghost' is disabled"
    );

    let dbs = c.call_ok("trexdb-list-databases", json!({})).await;
    let names: Vec<&str> = dbs["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["databaseName"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"main") && names.contains(&"shop"),
        "{names:?}"
    );
    assert!(
        !dbs.to_string().contains("trex.db"),
        "the control store is never attached"
    );
    let schemas = c.call_ok("trexdb-list-schemas", json!({})).await;
    assert!(schemas.to_string().contains("\"shop\""));
    let tables = c
        .call_ok("trexdb-list-tables", json!({"database": "shop"}))
        .await;
    let items = tables["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tableName"] == "items")
        .unwrap()
        .clone();
    assert_eq!(items["rowCount"], 3);
    assert_eq!(items["columnCount"], 2);
    assert_eq!(items["indexCount"], 1);
    // injection through a filter finds nothing rather than everything
    let inj = c
        .call_ok("trexdb-list-tables", json!({"database": "shop' OR '1'='1"}))
        .await;
    assert_eq!(inj["tables"], json!([]));
    let ext = c.call_ok("trexdb-list-extensions", json!({})).await;
    assert_eq!(ext["extensionLoading"], false);
    assert!(ext["functions"].as_array().unwrap().len() > 50);
}

#[tokio::test]
async fn trexdb_execute_sql_is_read_only_capped_and_time_limited() {
    let (s, c) = ready().await;
    sqlite_fixture(&s, "shop.db", 2);
    c.call_ok(
        "database-create",
        json!({"id": "shop", "dialect": "sqlite", "databaseName": "shop.db"}),
    )
    .await;
    let d = dangerous_client(&s, &c).await;

    // DDL needs the dangerousSql scope and allowWrite
    let e = c
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": "CREATE TABLE t (a)", "allowWrite": true}),
        )
        .await;
    assert!(e.contains("Dangerous") && e.contains("dangerousSql"), "{e}");
    let e = d
        .call_err("trexdb-execute-sql", json!({"sql": "CREATE TABLE t (a)"}))
        .await;
    assert!(e.contains("allowWrite"), "{e}");
    d.call_ok(
        "trexdb-execute-sql",
        json!({"sql": "CREATE TABLE t (a)", "allowWrite": true}),
    )
    .await;
    // writes need allowWrite; then they work
    assert!(
        c.call_err(
            "trexdb-execute-sql",
            json!({"sql": "INSERT INTO t VALUES (1)"})
        )
        .await
        .contains("allowWrite")
    );
    let w = c.call_ok("trexdb-execute-sql", json!({"sql": "INSERT INTO t VALUES (?1), (?2)", "parameters": [1, "x"], "allowWrite": true})).await;
    assert_eq!(w["rowsAffected"], 2);
    let r = c
        .call_ok(
            "trexdb-execute-sql",
            json!({"sql": "SELECT a FROM t WHERE a = ?1", "parameters": ["x"]}),
        )
        .await;
    assert_eq!(r["rows"], json!([["x"]]));
    assert_eq!(r["statementClass"], "safe");
    // a write hidden in a read (keyword tricks) is stopped by the engine, not by keywords
    let e = c
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x"}),
        )
        .await;
    assert!(e.contains("allowWrite") || e.contains("read-only"), "{e}");
    // attached registered databases are read-only even with allowWrite
    let e = d
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": "DELETE FROM shop.items", "allowWrite": true}),
        )
        .await;
    assert!(e.contains("read") || e.contains("readonly"), "{e}");
    // ATTACH of the control store and extension loading are refused by the authorizer
    let store = s.data_dir().join("trex.db");
    for sql in [
        format!("ATTACH DATABASE '{}' AS ctl", store.display()),
        "ATTACH DATABASE 'trex.db' AS ctl".to_string(),
    ] {
        let e = d
            .call_err(
                "trexdb-execute-sql",
                json!({"sql": sql, "allowWrite": true}),
            )
            .await;
        assert!(e.contains("Not authorized"), "{e}");
    }
    let e = d
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": "SELECT load_extension('/tmp/x.so')", "allowWrite": true}),
        )
        .await;
    assert!(e.contains("Not authorized"), "{e}");
    // more than one statement
    let e = d
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": "SELECT 1; DROP TABLE t", "allowWrite": true}),
        )
        .await;
    assert!(e.contains("one statement"), "{e}");
    // a query that runs forever is stopped at the limit; the next one works
    let forever =
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n";
    let e = c
        .call_err("trexdb-execute-sql", json!({"sql": forever}))
        .await;
    assert!(e.contains("1 s limit"), "{e}");
    assert_eq!(
        c.call_ok("trexdb-execute-sql", json!({"sql": "SELECT 41 + 1"}))
            .await["rows"],
        json!([[42]])
    );
    // a million rows come back capped
    let million = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000000) SELECT x FROM n";
    let r = c
        .call_ok("trexdb-execute-sql", json!({"sql": million}))
        .await;
    assert_eq!(r["rowCount"], 1000);
    assert_eq!(r["truncated"], true);
    // rows are also capped by bytes, and no single value larger than the budget is built
    let big = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20) SELECT randomblob(1000000) FROM n";
    let r = c.call_ok("trexdb-execute-sql", json!({"sql": big})).await;
    assert_eq!(r["truncated"], true);
    assert!(r["rowCount"].as_u64().unwrap() < 20, "{}", r["rowCount"]);
    let e = c
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": "SELECT randomblob(20000000)"}),
        )
        .await;
    assert!(e.contains("too big"), "{e}");
    // bad parameters name the field
    let e = c
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": "SELECT ?1", "parameters": [{"a": 1}]}),
        )
        .await;
    assert!(e.contains("parameters[0]"), "{e}");
    let e = c
        .call_err(
            "trexdb-execute-sql",
            json!({"sql": "SELECT ?1", "parameters": []}),
        )
        .await;
    assert!(e.contains("parameters"), "{e}");
    // injection through a parameter stays data
    let r = c
        .call_ok(
            "trexdb-execute-sql",
            json!({"sql": "SELECT count(*) FROM t WHERE a = ?1", "parameters": ["x' OR '1'='1"]}),
        )
        .await;
    assert_eq!(r["rows"], json!([[0]]));
}

/// The endpoint URL of a database's server.
fn endpoint(s: &TestServer, id: &str, server: &str) -> String {
    format!("{}/api/v1/endpoints/{id}/mcp/{server}", s.base())
}

#[tokio::test]
async fn sqlite_endpoint_server() {
    let (s, c) = ready().await;
    sqlite_fixture(&s, "shop.db", 2);
    c.call_ok(
        "database-create",
        json!({"id": "shop", "dialect": "sqlite", "databaseName": "shop.db"}),
    )
    .await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/api/v1/endpoints/shop/mcp", s.base()))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["servers"][0]["name"], "sqlite");
    assert!(v["servers"][0]["description"].is_string());
    for (url, status) in [
        (format!("{}/api/v1/endpoints/nope/mcp", s.base()), 404),
        (endpoint(&s, "shop", "postgres"), 404),
        (endpoint(&s, "nope", "sqlite"), 404),
    ] {
        let r = http
            .get(&url)
            .bearer_auth(&s.key)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{url}");
        let _: Value = r.json().await.expect("JSON error body");
    }
    let r = http
        .get(format!("{}/api/v1/endpoints/shop/mcp", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let mut e = Client::new(&endpoint(&s, "shop", "sqlite"), Some(&s.key));
    e.initialize().await;
    let tools = e.rpc("tools/list", json!({})).await["result"]["tools"].clone();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["execute_sqlite_query", "get_sqlite_metadata"]);
    let r = e
        .call_ok(
            "execute_sqlite_query",
            json!({"query": "SELECT name FROM items WHERE id = ?1", "parameters": [1]}),
        )
        .await;
    assert_eq!(r["rows"], json!([["item 0"]]));
    let r = e
        .call_ok(
            "execute_sqlite_query",
            json!({"query": "UPDATE items SET name = ?1 WHERE id = 2", "parameters": ["renamed"]}),
        )
        .await;
    assert_eq!(r["statementClass"], "moderate");
    assert_eq!(r["rowsAffected"], 1);
    for q in [
        "DROP TABLE items",
        "COMMIT; DROP TABLE items",
        "PRAGMA journal_mode = DELETE",
        "ATTACH DATABASE 'trex.db' AS x",
    ] {
        let err = e
            .call_err("execute_sqlite_query", json!({"query": q}))
            .await;
        // more than one statement is refused as such, the others as Dangerous
        assert!(
            err.contains("Dangerous") || err.contains("one statement per call"),
            "{q}: {err}"
        );
    }
    for (kind, want) in [
        ("tables", "items"),
        ("columns", "name"),
        ("indexes", "items_name"),
        ("views", "v"),
    ] {
        let m = e
            .call_ok("get_sqlite_metadata", json!({"object_type": kind}))
            .await;
        assert!(m["rows"].to_string().contains(want), "{kind}: {m}");
    }
    assert!(
        e.call_err("get_sqlite_metadata", json!({"object_type": "triggers"}))
            .await
            .contains("object_type")
    );
    let m = e
        .call_ok(
            "get_sqlite_metadata",
            json!({"object_type": "columns", "table": "items' OR '1'='1"}),
        )
        .await;
    assert_eq!(m["rows"], json!([]));

    // the admin session does not work here, nor this session on the admin server
    let mut admin = s.client();
    admin.initialize().await;
    let cross = e.clone();
    let mut cross = cross;
    cross.url = s.url();
    assert_eq!(
        cross
            .post()
            .json(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // endpoint scopes and disabled databases
    let k = c.call_ok("api-key-create", json!({"userId": s.admin_id, "name": "other-db", "scopes": {"endpoints": ["elsewhere"]}})).await;
    let r = http
        .get(format!("{}/api/v1/endpoints/shop/mcp", s.base()))
        .bearer_auth(k["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    c.call_ok("database-update", json!({"id": "shop", "enabled": false}))
        .await;
    assert_eq!(
        e.call_err("execute_sqlite_query", json!({"query": "SELECT 1"}))
            .await,
        "Database 'shop' is disabled"
    );
}

/// A scratch schema in database `test`; dropped at the end by the caller.
pub(crate) async fn pg_admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
}

#[tokio::test]
async fn postgres_for_real() {
    if !crate::common::postgres_or_skip("postgres_for_real").await {
        return;
    }
    let schema = format!("trex_t_{}", trex::util::random_hex(4));
    let pg = pg_admin().await;
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.items (id serial PRIMARY KEY, name text, price numeric(8,2), tags jsonb);
         INSERT INTO {schema}.items (name, price, tags) VALUES ('a', 1.50, '[\"x\"]'), ('b', 2.25, null);
         CREATE SEQUENCE {schema}.seq; CREATE VIEW {schema}.cheap AS SELECT * FROM {schema}.items WHERE price < 2;
         CREATE VIEW {schema}.bump AS SELECT nextval('{schema}.seq');"
    ))
    .await
    .unwrap();

    let (s, c) = ready().await;
    c.call_ok(
        "database-create",
        json!({"id": "pg", "host": "127.0.0.1", "port": 5432, "databaseName": "test"}),
    )
    .await;
    assert_eq!(
        c.call_err("database-test-connection", json!({"databaseId": "pg"}))
            .await,
        "No credentials configured for this database"
    );
    c.call_ok(
        "database-credential-save",
        json!({"databaseId": "pg", "username": "postgres", "password": "unused-under-trust"}),
    )
    .await;
    let t = c
        .call_ok("database-test-connection", json!({"databaseId": "pg"}))
        .await;
    assert_eq!(t["message"], "Connection successful");
    assert!(
        t["serverVersion"].as_str().unwrap().starts_with("15"),
        "{t}"
    );
    c.call_ok(
        "database-create",
        json!({"id": "pgbad", "host": "127.0.0.1", "port": 1, "databaseName": "test"}),
    )
    .await;
    c.call_ok(
        "database-credential-save",
        json!({"databaseId": "pgbad", "username": "postgres", "password": "x"}),
    )
    .await;
    assert!(
        c.call_err("database-test-connection", json!({"databaseId": "pgbad"}))
            .await
            .starts_with("Connection failed")
    );

    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/endpoints/pg/mcp", s.base()))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["servers"][0]["name"], "postgres");
    let mut e = Client::new(&endpoint(&s, "pg", "postgres"), Some(&s.key));
    e.initialize().await;
    let q = |sql: String, params: Value| json!({"query": sql, "parameters": params});
    let r = e
        .call_ok(
            "execute_postgres_query",
            q(
                format!("SELECT id, name, price, tags FROM {schema}.items WHERE name = $1"),
                json!(["a"]),
            ),
        )
        .await;
    assert_eq!(r["columns"], json!(["id", "name", "price", "tags"]));
    // numerics come back as strings, precision kept
    assert_eq!(r["rows"], json!([[1, "a", "1.50", ["x"]]]));
    let r = e
        .call_ok(
            "execute_postgres_query",
            q(
                format!("INSERT INTO {schema}.items (name) VALUES ($1) RETURNING id, name"),
                json!(["c"]),
            ),
        )
        .await;
    assert_eq!(r["rows"], json!([[3, "c"]]));
    assert_eq!(r["statementClass"], "moderate");
    let r = e
        .call_ok(
            "execute_postgres_query",
            q(
                format!("DELETE FROM {schema}.items WHERE name = $1"),
                json!(["c"]),
            ),
        )
        .await;
    assert_eq!(r["rowsAffected"], 1);
    // a function off the allow-list is Dangerous before it reaches the server
    let err = e
        .call_err(
            "execute_postgres_query",
            q(format!("SELECT nextval('{schema}.seq')"), json!([])),
        )
        .await;
    assert!(err.contains("Dangerous"), "{err}");
    // and reads run in a read-only transaction: a "read" that writes out of the parser's sight
    // (through a view) fails in the engine
    let err = e
        .call_err(
            "execute_postgres_query",
            q(format!("SELECT * FROM {schema}.bump"), json!([])),
        )
        .await;
    assert!(err.contains("read-only"), "{err}");
    for sql in [
        format!("DROP TABLE {schema}.items"),
        format!("EXPLAIN (ANALYZE) CREATE TABLE {schema}.sneaky AS SELECT 1"),
        "SELECT lo_from_bytea(0, 'x')".to_string(),
        "SELECT pg_notify('c', 'x')".to_string(),
        format!("COMMIT; DROP TABLE {schema}.items"),
        "SET statement_timeout = 0".to_string(),
        "BEGIN".to_string(),
    ] {
        let err = e
            .call_err("execute_postgres_query", q(sql.clone(), json!([])))
            .await;
        assert!(
            err.contains("Dangerous") || err.contains("one statement per call"),
            "{sql}: {err}"
        );
    }
    // injection in parameters stays data
    let r = e
        .call_ok(
            "execute_postgres_query",
            q(
                format!("SELECT count(*) AS n FROM {schema}.items WHERE name = $1"),
                json!(["a' OR '1'='1"]),
            ),
        )
        .await;
    assert_eq!(r["rows"], json!([[0]]));
    // runaway query stopped at the limit; the next query works
    let err = e
        .call_err(
            "execute_postgres_query",
            q("SELECT pg_sleep(10)".into(), json!([])),
        )
        .await;
    assert!(err.contains("1 s limit"), "{err}");
    assert_eq!(
        e.call_ok(
            "execute_postgres_query",
            q("SELECT 1 AS one".into(), json!([]))
        )
        .await["rows"],
        json!([[1]])
    );
    // a million rows: capped, only the cap is fetched
    let r = e
        .call_ok(
            "execute_postgres_query",
            q(
                "SELECT g FROM generate_series(1, 1000000) g".into(),
                json!([]),
            ),
        )
        .await;
    assert_eq!(r["rowCount"], 1000);
    assert_eq!(r["truncated"], true);
    // metadata
    for (kind, want) in [
        ("tables", "items"),
        ("columns", "price"),
        ("indexes", "items_pkey"),
        ("views", "cheap"),
    ] {
        let m = e
            .call_ok(
                "get_postgres_metadata",
                json!({"object_type": kind, "schema": schema}),
            )
            .await;
        assert!(m["rows"].to_string().contains(want), "{kind}: {m}");
    }
    let m = e
        .call_ok(
            "get_postgres_metadata",
            json!({"object_type": "tables", "schema": format!("{schema}' OR '1'='1")}),
        )
        .await;
    assert_eq!(m["rows"], json!([]));
    // a Dangerous statement with the scope
    let d = dangerous_client(&s, &c).await;
    let mut de = Client::new(&endpoint(&s, "pg", "postgres"), d.key.as_deref());
    de.initialize().await;
    de.call_ok(
        "execute_postgres_query",
        q(format!("CREATE TABLE {schema}.made (a int)"), json!([])),
    )
    .await;
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

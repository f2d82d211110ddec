-- trex control store (trex.db).
--
-- Embedded in the binary with include_str! and applied by src/store/schema.rs. The file is a list of
-- versions, each introduced by a line `-- version: N`. A store at `PRAGMA user_version = K` gets every
-- version above K applied in order, all in one transaction, and user_version set to the last one.
-- Never edit a version that has shipped: append a new one.
--
-- Conventions: ids are TEXT (UUID v4 unless said otherwise); times are TEXT in RFC 3339 UTC with
-- milliseconds (`2026-11-25T09:31:27.123Z`), so they sort as strings; booleans are INTEGER 0/1.

-- version: 1

CREATE TABLE users (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    email                TEXT NOT NULL UNIQUE COLLATE NOCASE,
    email_verified       INTEGER NOT NULL DEFAULT 0,
    image                TEXT,
    role                 TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
    banned               INTEGER NOT NULL DEFAULT 0,
    ban_reason           TEXT,
    ban_expires          TEXT,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    password_hash        TEXT,            -- argon2id PHC string; NULL for SSO-only users
    deleted_at           TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE INDEX users_created ON users (created_at DESC, id DESC);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,    -- SHA-256 hex of the whole key; the key itself is never stored
    key_prefix   TEXT NOT NULL,           -- first 13 characters, e.g. `trex_1a2b3c4d`
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scopes       TEXT,                    -- JSON object, NULL = unrestricted
    last_used_at TEXT,
    expires_at   TEXT,
    revoked_at   TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX api_keys_user ON api_keys (user_id);
CREATE INDEX api_keys_created ON api_keys (created_at DESC, id DESC);

-- MCP sessions of the Streamable HTTP transport. They are rows, so a session survives a restart.
CREATE TABLE mcp_sessions (
    id                  TEXT PRIMARY KEY,  -- 64 hex characters from the OS CSPRNG
    server              TEXT NOT NULL,     -- which MCP server (path) the session belongs to
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_id              TEXT NOT NULL,
    protocol_version    TEXT NOT NULL,
    client_info         TEXT NOT NULL DEFAULT '{}',
    client_capabilities TEXT NOT NULL DEFAULT '{}',
    log_level           TEXT NOT NULL DEFAULT 'info',
    initialized         INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    last_seen_at        TEXT NOT NULL
);
CREATE INDEX mcp_sessions_user ON mcp_sessions (user_id);

-- Every mutating tool call, allowed or refused. Arguments are stored with secrets redacted.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    user_id    TEXT,
    key_id     TEXT,
    server     TEXT NOT NULL,
    tool       TEXT NOT NULL,
    arguments  TEXT NOT NULL,
    outcome    TEXT NOT NULL,             -- ok | error | refused
    detail     TEXT
);
CREATE INDEX audit_log_at ON audit_log (at DESC);

CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,             -- JSON
    updated_at TEXT NOT NULL
);

-- version: 2

-- Application roles (separate from users.role, which is admin|user).
CREATE TABLE roles (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    description TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX roles_created ON roles (created_at DESC, id DESC);

CREATE TABLE user_roles (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id    TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role ON user_roles (role_id);

-- Web (cookie) sessions of the admin page. Only the SHA-256 of the cookie token is stored.
CREATE TABLE web_sessions (
    id         TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ip_address TEXT,
    user_agent TEXT,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

-- SSO providers. client_secret is sealed (AES-256-GCM with the master key), never clear text.
CREATE TABLE sso_providers (
    id            TEXT PRIMARY KEY CHECK (id GLOB '[a-z]*' AND id NOT GLOB '*[^a-z0-9_]*'),
    display_name  TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    client_secret TEXT NOT NULL,          -- sealed; '' when none was given
    enabled       INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

-- OAuth/OIDC client applications. client_secret is sealed.
CREATE TABLE oauth_apps (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    icon          TEXT,
    metadata      TEXT,                   -- JSON text, validated
    client_id     TEXT NOT NULL UNIQUE,
    client_secret TEXT NOT NULL,          -- sealed
    redirect_urls TEXT NOT NULL,          -- JSON array of URLs
    type          TEXT NOT NULL DEFAULT 'web' CHECK (type IN ('web', 'native')),
    disabled      INTEGER NOT NULL DEFAULT 0,
    user_id       TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX oauth_apps_created ON oauth_apps (created_at DESC, id DESC);

-- Tokens and consents issued to apps; deleting an app deletes them.
CREATE TABLE oauth_tokens (
    id         TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES oauth_apps (id) ON DELETE CASCADE,
    user_id    TEXT REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    scopes     TEXT,
    expires_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX oauth_tokens_app ON oauth_tokens (app_id);

CREATE TABLE oauth_consents (
    id         TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES oauth_apps (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scopes     TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX oauth_consents_app ON oauth_consents (app_id);

-- version: 3

-- External databases (trexsql's `database`): PostgreSQL servers and SQLite files.
CREATE TABLE databases (
    id            TEXT PRIMARY KEY CHECK (id <> '' AND id NOT GLOB '*[^A-Za-z0-9_]*'),
    host          TEXT,                   -- NULL for sqlite
    port          INTEGER,
    database_name TEXT NOT NULL,          -- sqlite: the file path
    dialect       TEXT NOT NULL CHECK (dialect IN ('postgresql', 'sqlite')),
    description   TEXT,
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX databases_created ON databases (created_at DESC, id DESC);

-- Credentials of external databases. password is sealed with the master key.
CREATE TABLE database_credentials (
    id            TEXT PRIMARY KEY,
    database_id   TEXT NOT NULL REFERENCES databases (id) ON DELETE CASCADE ON UPDATE CASCADE,
    username      TEXT NOT NULL,
    password      TEXT NOT NULL,          -- sealed
    user_scope    TEXT,
    service_scope TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (database_id, username)
);

-- version: 4

-- Audit rows say through which front door a change came (mcp | cli | web) and from where.
ALTER TABLE audit_log ADD COLUMN via TEXT NOT NULL DEFAULT 'mcp';
ALTER TABLE audit_log ADD COLUMN remote TEXT;
CREATE INDEX audit_log_via ON audit_log (via, id DESC);

-- version: 5

-- The durable job runtime: a job is a row, claimed by one worker at a time under a lease that the
-- worker renews while it runs. A lease that runs out means the worker's process died: the job is
-- recovered by the next runtime that looks (failed, or queued again when its kind allows).
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,           -- JSON
    state            TEXT NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 1,
    progress         REAL,
    progress_total   REAL,
    progress_message TEXT,
    result           TEXT,                    -- JSON, when succeeded
    error            TEXT,                    -- when failed or cancelled
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,                    -- the runtime holding it
    lease_until      INTEGER,                 -- ms since the epoch
    heartbeat_at     INTEGER,                 -- ms since the epoch
    created_by       TEXT,                    -- user id
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    updated_at       TEXT NOT NULL
);
CREATE INDEX jobs_queue ON jobs (state, created_at);

-- version: 6

-- Where a registered database keeps its versioned migration files (V<n>__<name>.sql); NULL for
-- none. Relative to <data_dir>/migrations/ unless absolute (then inside an allowed directory).
ALTER TABLE databases ADD COLUMN migrations_dir TEXT;

-- version: 7

-- Migration definitions (the migrations MCP server, Eden's model): one row per version of a
-- definition; `body` is its normalized JSON (strategy, data, failure_handling, apis, interlays),
-- `digest` the SHA-256 of that JSON. `status` follows the latest runs of the version:
-- pending -> ready (tested) -> running -> completed | failed | rolling_back -> rolled_back.
CREATE TABLE migration_definitions (
    id          TEXT NOT NULL,
    version     INTEGER NOT NULL,
    description TEXT,
    body        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    created_by  TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE INDEX migration_definitions_updated ON migration_definitions (updated_at);

-- A run of one definition version in `test` or `migrate` mode: a job of the job runtime, with a
-- row per target database.
CREATE TABLE migration_runs (
    id           TEXT PRIMARY KEY,
    migration_id TEXT NOT NULL,
    version      INTEGER NOT NULL,
    mode         TEXT NOT NULL CHECK (mode IN ('test', 'migrate')),
    state        TEXT NOT NULL DEFAULT 'pending',
    job_id       TEXT,
    error        TEXT,
    created_by   TEXT,
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT,
    FOREIGN KEY (migration_id, version) REFERENCES migration_definitions (id, version) ON DELETE CASCADE
);
CREATE INDEX migration_runs_of ON migration_runs (migration_id, version, created_at);

CREATE TABLE migration_run_targets (
    run_id        TEXT NOT NULL REFERENCES migration_runs (id) ON DELETE CASCADE,
    database_id   TEXT NOT NULL,
    position      INTEGER NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending',
    -- SHA-256 of the target's schema when the run looked at it: a migrate run is refused when
    -- it differs from what the passing test saw
    schema_digest TEXT,
    report        TEXT,                 -- JSON: statements, rows, schema diff, apis, time
    error         TEXT,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (run_id, database_id)
);

-- version: 8

-- Every running `trex serve` that shares this store: registered at start, heartbeating every
-- cluster.heartbeat_secs; alive, suspect or dead by the age of its last heartbeat.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    listen       TEXT NOT NULL,
    version      TEXT NOT NULL,
    pid          INTEGER,
    data_node    INTEGER NOT NULL DEFAULT 1,
    started_at   TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    stopped_at   TEXT
);

-- version: 9

-- Installed plugins: one row per plugin, its files in <data_dir>/plugins/<name>/package and its
-- own database at <data_dir>/plugins/<name>/plugin.db. `manifest` is the checked `trex` key of
-- its package.json (JSON); the files are node-local, the row is what every node sees.
CREATE TABLE plugins (
    name         TEXT PRIMARY KEY,
    package      TEXT NOT NULL,         -- the package.json name (`@scope/hello` or `hello`)
    version      TEXT NOT NULL,
    manifest     TEXT NOT NULL,
    source       TEXT NOT NULL,         -- the packageSpec it was installed from
    sha256       TEXT,                  -- of the archive, when installed from one
    installed_at TEXT NOT NULL,
    installed_by TEXT
);

-- version: 10

-- ETL/CDC pipelines: one row per pipeline, whether it is wanted running (`desired`), its last
-- known state and error. Where it stands in the source (its checkpoint) is kept with the
-- replica in trexdb's main file (`_trex_etl_checkpoints`), committed with each batch.
CREATE TABLE pipelines (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    database_id        TEXT NOT NULL,
    credential_id      TEXT,
    mode               TEXT NOT NULL CHECK (mode IN ('copy_and_cdc', 'cdc_only', 'copy_only')),
    publication        TEXT,
    schema_name        TEXT NOT NULL DEFAULT 'public',
    tables             TEXT,                -- JSON array of table names, or NULL for all
    slot               TEXT NOT NULL,       -- replication slot / change-table suffix
    batch_size         INTEGER NOT NULL,
    batch_timeout_ms   INTEGER NOT NULL,
    retry_delay_ms     INTEGER NOT NULL,
    retry_max_attempts INTEGER NOT NULL,
    desired            TEXT NOT NULL CHECK (desired IN ('running', 'stopped')),
    state              TEXT NOT NULL,
    error              TEXT,
    node               TEXT,                -- the node that runs it
    created_at         TEXT NOT NULL,
    created_by         TEXT,
    updated_at         TEXT NOT NULL
);

-- version: 11

-- SSO sign-in: a provider other than `github` signs in by OpenID Connect discovery from its
-- issuer URL (NULL: not set yet; such a provider cannot be enabled).
ALTER TABLE sso_providers ADD COLUMN issuer TEXT;

-- version: 12

-- Tasks of the MCP tasks extension (2026-07-28, io.modelcontextprotocol/tasks): a tool call run
-- in the background and polled with tasks/get from any connection or node. `key_id` is the
-- caller that created it (only that caller sees it); `runner` the process running it, which
-- renews `lease_until` (ms) while it does; `backing` (JSON) names durable work the task follows
-- (a migration run's job), so a task whose runner died is still answered from that work.
-- Times are ms since the epoch. Ended rows are deleted once `created_at + ttl_ms` has passed.
CREATE TABLE mcp_tasks (
    id               TEXT PRIMARY KEY,
    key_id           TEXT NOT NULL,
    server_id        TEXT NOT NULL,
    tool             TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('working', 'input_required', 'completed', 'failed', 'cancelled')),
    status_message   TEXT,
    backing          TEXT,
    runner           TEXT,
    lease_until      INTEGER NOT NULL,
    result           TEXT,
    error            TEXT,
    input_requests   TEXT NOT NULL DEFAULT '{}',
    input_responses  TEXT NOT NULL DEFAULT '{}',
    answered         TEXT NOT NULL DEFAULT '[]',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    ttl_ms           INTEGER NOT NULL
);
CREATE INDEX mcp_tasks_runner ON mcp_tasks (runner, status);
CREATE INDEX mcp_tasks_expiry ON mcp_tasks (created_at);

-- version: 13

-- Failed sign-ins in fixed windows, per key: `pair <address> <account>` or `address <address>`
-- (src/auth/limiter.rs). Rows, so the rate limit holds for every node of a shared store.
CREATE TABLE login_attempts (
    key             TEXT PRIMARY KEY,
    window_start_ms INTEGER NOT NULL,
    failures        INTEGER NOT NULL
);

-- version: 14

-- The background services of each node as of its last heartbeat (JSON: the list
-- cluster-list-services shows), so any node can show which node runs which service.
ALTER TABLE nodes ADD COLUMN services TEXT;

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

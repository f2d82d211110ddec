-- The hello plugin's one table, in its own database (<data_dir>/plugins/hello/plugin.db).
CREATE TABLE greetings (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL,
    at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

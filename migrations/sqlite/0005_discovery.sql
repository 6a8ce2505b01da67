-- Bazaar discovery: the catalog of paid resources learned from /verify and /settle (src/discovery).
-- Same tables as the Postgres file; the search index is an FTS5 table kept in step by triggers
-- (the bundled SQLite that sqlx links is compiled with SQLITE_ENABLE_FTS5).
-- The small columns that filters and sorts read come first, the large text last (SQLite reads
-- a record's columns in order, overflow pages included).
CREATE TABLE catalog_resources (
    id              INTEGER PRIMARY KEY,
    resource        TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('http', 'mcp')),
    method          TEXT NOT NULL DEFAULT '',
    tool_name       TEXT NOT NULL DEFAULT '',
    x402_version    INTEGER NOT NULL,
    first_seen_at   INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    last_settled_at INTEGER,
    settled_30d     INTEGER NOT NULL DEFAULT 0,
    service_name    TEXT,
    tags            TEXT,
    tags_text       TEXT,
    icon_url        TEXT,
    mime_type       TEXT,
    description     TEXT,
    bazaar          TEXT NOT NULL,
    CONSTRAINT catalog_resources_key UNIQUE (resource, method, tool_name)
);
CREATE INDEX catalog_resources_settled ON catalog_resources (last_settled_at);
CREATE INDEX catalog_resources_first_seen ON catalog_resources (first_seen_at, id, last_settled_at);
CREATE INDEX catalog_resources_recent ON catalog_resources (last_seen_at DESC, id DESC, last_settled_at);
CREATE INDEX catalog_resources_popular ON catalog_resources (settled_30d DESC, id, last_settled_at);

-- serviceName, description, tags: columns weighted 10 : 5 : 1 by bm25() at query time.
-- porter stemming, like Postgres' 'english' configuration.
CREATE VIRTUAL TABLE catalog_search USING fts5(
    service_name, description, tags_text,
    content = 'catalog_resources', content_rowid = 'id',
    tokenize = 'porter unicode61'
);
CREATE TRIGGER catalog_search_insert AFTER INSERT ON catalog_resources BEGIN
    INSERT INTO catalog_search (rowid, service_name, description, tags_text)
    VALUES (new.id, new.service_name, new.description, new.tags_text);
END;
CREATE TRIGGER catalog_search_delete AFTER DELETE ON catalog_resources BEGIN
    INSERT INTO catalog_search (catalog_search, rowid, service_name, description, tags_text)
    VALUES ('delete', old.id, old.service_name, old.description, old.tags_text);
END;
CREATE TRIGGER catalog_search_update AFTER UPDATE OF service_name, description, tags_text
    ON catalog_resources BEGIN
    INSERT INTO catalog_search (catalog_search, rowid, service_name, description, tags_text)
    VALUES ('delete', old.id, old.service_name, old.description, old.tags_text);
    INSERT INTO catalog_search (rowid, service_name, description, tags_text)
    VALUES (new.id, new.service_name, new.description, new.tags_text);
END;

CREATE TABLE catalog_accepts (
    resource_id INTEGER NOT NULL,
    scheme      TEXT NOT NULL,
    network     TEXT NOT NULL,
    pay_to      TEXT NOT NULL,
    asset       TEXT NOT NULL,
    amount_key  TEXT NOT NULL,
    requirement TEXT NOT NULL,
    PRIMARY KEY (resource_id, scheme, network)
);
CREATE INDEX catalog_accepts_pay_to ON catalog_accepts (pay_to);
CREATE INDEX catalog_accepts_network ON catalog_accepts (network);
CREATE INDEX catalog_accepts_asset ON catalog_accepts (asset, amount_key);

CREATE TABLE catalog_prices (
    resource_id INTEGER NOT NULL,
    network     TEXT NOT NULL,
    asset       TEXT NOT NULL,
    min_key     TEXT NOT NULL,
    max_key     TEXT NOT NULL,
    PRIMARY KEY (resource_id, network, asset)
);

CREATE TABLE catalog_payments (
    network     TEXT NOT NULL,
    tx_id       TEXT NOT NULL,
    resource_id INTEGER NOT NULL,
    payer       TEXT NOT NULL,
    settled_at  INTEGER NOT NULL,
    PRIMARY KEY (network, tx_id)
);
CREATE INDEX catalog_payments_resource ON catalog_payments (resource_id, settled_at);
CREATE INDEX catalog_payments_settled ON catalog_payments (settled_at);

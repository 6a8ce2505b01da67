-- Bazaar discovery: the catalog of paid resources learned from /verify and /settle (src/discovery).
-- Times are unix milliseconds like the rest of the ledger. HTTP resources are keyed by
-- (resource, method), MCP tools by (resource, tool_name); the unused part is '' rather than NULL so
-- that one plain unique index serves both backends.
-- The small columns that filters and sorts read come first, the large text last.
CREATE TABLE catalog_resources (
    id              BIGSERIAL PRIMARY KEY,
    -- Canonical URL: origin + routeTemplate, or origin + path (no query, no fragment).
    resource        TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('http', 'mcp')),
    method          TEXT NOT NULL DEFAULT '',
    tool_name       TEXT NOT NULL DEFAULT '',
    x402_version    INTEGER NOT NULL,
    first_seen_at   BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL,
    -- NULL while the resource was only ever verified, never settled.
    last_settled_at BIGINT,
    -- Settled payments in the last 30 days (catalog_payments), kept here so that sorting by
    -- popularity reads one indexed column.
    settled_30d     BIGINT NOT NULL DEFAULT 0,
    service_name    TEXT,
    -- JSON array of the sanitised tags, and the same tags joined by spaces for the search index.
    tags            TEXT,
    tags_text       TEXT,
    icon_url        TEXT,
    mime_type       TEXT,
    description     TEXT,
    -- The validated extensions.bazaar object ({info, schema, routeTemplate?}) as JSON text.
    bazaar          TEXT NOT NULL,
    -- Weighted full-text index: serviceName A > description B > tags C (what the official
    -- TypeScript Postgres catalog indexes; the route and the bazaar info are not indexed).
    search_vector   tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(service_name, '')), 'A') ||
        setweight(to_tsvector('english', coalesce(description, '')), 'B') ||
        setweight(to_tsvector('english', coalesce(tags_text, '')), 'C')
    ) STORED,
    CONSTRAINT catalog_resources_key UNIQUE (resource, method, tool_name)
);
CREATE INDEX catalog_resources_search ON catalog_resources USING GIN (search_vector);
CREATE INDEX catalog_resources_settled ON catalog_resources (last_settled_at);
-- One index per sort order, each carrying last_settled_at so that choosing a page (the paid
-- filter, the order, the offset) never reads the rows themselves.
CREATE INDEX catalog_resources_first_seen ON catalog_resources (first_seen_at, id, last_settled_at);
CREATE INDEX catalog_resources_recent ON catalog_resources (last_seen_at DESC, id DESC, last_settled_at);
CREATE INDEX catalog_resources_popular ON catalog_resources (settled_30d DESC, id, last_settled_at);

-- The seller's payment requirements seen for a resource, one per (scheme, network): a newer
-- sighting replaces the older one. Filters read the normalised columns; `requirement` is served.
CREATE TABLE catalog_accepts (
    resource_id BIGINT NOT NULL,
    scheme      TEXT NOT NULL,
    network     TEXT NOT NULL,
    -- EVM addresses lowercased, other addresses as given.
    pay_to      TEXT NOT NULL,
    asset       TEXT NOT NULL,
    -- The amount zero-padded to 78 digits (a uint256), so that text order (bytewise: C collation)
    -- is numeric order.
    amount_key  TEXT COLLATE "C" NOT NULL,
    requirement TEXT NOT NULL,
    PRIMARY KEY (resource_id, scheme, network)
);
CREATE INDEX catalog_accepts_pay_to ON catalog_accepts (pay_to);
CREATE INDEX catalog_accepts_network ON catalog_accepts (network);
CREATE INDEX catalog_accepts_asset ON catalog_accepts (asset, amount_key);

-- The lowest and highest amount ever seen per (network, asset), however the accepts changed.
CREATE TABLE catalog_prices (
    resource_id BIGINT NOT NULL,
    network     TEXT NOT NULL,
    asset       TEXT NOT NULL,
    min_key     TEXT COLLATE "C" NOT NULL,
    max_key     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (resource_id, network, asset)
);

-- One row per settled payment of a catalogued resource, keyed by its transaction so that a
-- replayed answer (payment-identifier, a late settlement_pending retry) counts once.
CREATE TABLE catalog_payments (
    network     TEXT NOT NULL,
    tx_id       TEXT NOT NULL,
    resource_id BIGINT NOT NULL,
    payer       TEXT NOT NULL,
    settled_at  BIGINT NOT NULL,
    PRIMARY KEY (network, tx_id)
);
CREATE INDEX catalog_payments_resource ON catalog_payments (resource_id, settled_at);
CREATE INDEX catalog_payments_settled ON catalog_payments (settled_at);

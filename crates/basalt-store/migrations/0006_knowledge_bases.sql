-- Knowledge bases, their data sources and ingestion jobs: the control-plane records,
-- each as its Bedrock JSON shape. The chunks live in each knowledge base's own store.
CREATE TABLE knowledge_resources (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    parent TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE UNIQUE INDEX knowledge_resources_name ON knowledge_resources(kind, parent, name)
    WHERE kind != 'ingestion_job';
CREATE INDEX knowledge_resources_parent ON knowledge_resources(kind, parent, created_ms);

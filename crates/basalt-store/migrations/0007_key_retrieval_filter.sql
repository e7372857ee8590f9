-- A key's mandatory knowledge-base retrieval filter (RetrievalFilter JSON), joined
-- to every Retrieve / RetrieveAndGenerate the key makes (tenant isolation).
ALTER TABLE api_keys ADD COLUMN retrieval_filter TEXT;

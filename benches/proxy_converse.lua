-- wrk: a fixed small Bedrock Converse request (Bedrock API key as bearer) on the
-- remote model that proxies to the fixed upstream.
wrk.method = "POST"
wrk.path = "/model/openai.bench-upstream-v1%3A0/converse"
wrk.body = '{"system":[{"text":"You are terse."}],"messages":[{"role":"user","content":[{"text":"Hello there, how are you today?"}]}],"inferenceConfig":{"maxTokens":16}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("PROXY_TOKEN")

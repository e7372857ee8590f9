-- wrk: a fixed small Bedrock Converse request with a Bedrock API key (bearer).
wrk.method = "POST"
wrk.path = "/model/basalt.echo-v1%3A0/converse"
wrk.body = '{"system":[{"text":"You are terse."}],"messages":[{"role":"user","content":[{"text":"Hello there, how are you today?"}]}],"inferenceConfig":{"maxTokens":16}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BASALT_TOKEN")

-- wrk: a fixed small OpenAI chat completion with bearer auth.
wrk.method = "POST"
wrk.body = '{"model":"basalt.echo-v1:0","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Hello there, how are you today?"}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BASALT_TOKEN")

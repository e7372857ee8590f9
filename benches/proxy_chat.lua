-- wrk: a fixed small OpenAI chat completion. Env: PROXY_MODEL (the model name the
-- target knows) and PROXY_TOKEN (bearer credential; empty for nginx direct).
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.body = '{"model":"' .. os.getenv("PROXY_MODEL") .. '","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Hello there, how are you today?"}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("PROXY_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

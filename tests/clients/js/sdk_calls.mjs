// Calls Basalt with the real AWS SDK for JavaScript v3 (BedrockRuntimeClient and
// BedrockAgentRuntimeClient) over the SDK's default request handler, and prints one
// JSON object with what each call returned.
//
// Both clients default to @smithy/node-http-handler's NodeHttp2Handler, which speaks
// HTTP/2 with prior knowledge (h2c) to an http:// endpoint, and the SDK signs the
// `:authority` pseudo-header instead of `host`. The script does not configure a request
// handler; it records which one the clients resolved and every HTTP/2 stream and
// HTTP/1.x request the process made, so the caller can check that the exchange was
// HTTP/2.
//
// Settings (each `--name=value` argument wins over its environment variable):
//   --endpoint   BASALT_ENDPOINT            e.g. http://127.0.0.1:8080 (required)
//   --access-key BASALT_ACCESS_KEY_ID       SigV4 access key id (required)
//   --secret     BASALT_SECRET_ACCESS_KEY   SigV4 secret (required)
//   --model      BASALT_MODEL_ID            chat model id (required)
//   --kb         BASALT_KB_ID               knowledge base id (required by retrieve,
//                                           retrieveAndGenerate)
//   --agent      BASALT_AGENT_ID            a prepared agent's id (required by invokeAgent)
//   --region     BASALT_REGION              default us-east-1
//   --calls      BASALT_CALLS               comma-separated subset of: converse,
//                converseStream, invokeModel, countTokens, retrieve, retrieveAndGenerate,
//                invokeAgent (default: all)
//
// Output (stdout): {"ok", "sdk": {versions}, "handlers": {...}, "transport": {...},
// "calls": {name: {"ok", "status", "requestId", ...results | "error": {...}}}}.
// Exit status 0 when every call succeeded, 1 when one failed (its error is in the
// JSON and on stderr), 2 on bad settings.

import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import { createRequire } from "node:module";

import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
  CountTokensCommand,
  InvokeModelCommand,
} from "@aws-sdk/client-bedrock-runtime";
import {
  BedrockAgentRuntimeClient,
  InvokeAgentCommand,
  RetrieveAndGenerateCommand,
  RetrieveCommand,
} from "@aws-sdk/client-bedrock-agent-runtime";

const ALL_CALLS = [
  "converse",
  "converseStream",
  "invokeModel",
  "countTokens",
  "retrieve",
  "retrieveAndGenerate",
  "invokeAgent",
];

// ------------------------------------------------------------------ settings

function settings() {
  const flags = {};
  for (const arg of process.argv.slice(2)) {
    const m = /^--([a-z-]+)=(.*)$/s.exec(arg);
    if (!m) throw new Error(`unexpected argument ${JSON.stringify(arg)} (use --name=value)`);
    flags[m[1]] = m[2];
  }
  const env = process.env;
  const pick = (flag, name, fallback) => flags[flag] ?? env[name] ?? fallback;
  const s = {
    endpoint: pick("endpoint", "BASALT_ENDPOINT"),
    accessKeyId: pick("access-key", "BASALT_ACCESS_KEY_ID"),
    secretAccessKey: pick("secret", "BASALT_SECRET_ACCESS_KEY"),
    model: pick("model", "BASALT_MODEL_ID"),
    kb: pick("kb", "BASALT_KB_ID"),
    agent: pick("agent", "BASALT_AGENT_ID"),
    region: pick("region", "BASALT_REGION", "us-east-1"),
    calls: pick("calls", "BASALT_CALLS", ALL_CALLS.join(","))
      .split(",")
      .map((c) => c.trim())
      .filter(Boolean),
  };
  for (const [k, v] of Object.entries(s)) {
    if (v === undefined && k !== "kb" && k !== "agent") throw new Error(`setting ${k} is missing`);
  }
  const unknown = s.calls.filter((c) => !ALL_CALLS.includes(c));
  if (unknown.length) throw new Error(`unknown calls ${unknown.join(", ")}; known: ${ALL_CALLS.join(", ")}`);
  if (!s.kb && s.calls.some((c) => c.startsWith("retrieve"))) {
    throw new Error("setting kb is missing (needed by retrieve and retrieveAndGenerate)");
  }
  if (!s.agent && s.calls.includes("invokeAgent")) {
    throw new Error("setting agent is missing (needed by invokeAgent)");
  }
  return s;
}

// ------------------------------------------------------------------ transport record
// The handlers call `http2.connect`, `session.request`, `http.request` and
// `https.request` through the (shared) module objects at request time, so wrapping
// them here sees every exchange the SDK makes.

const transport = { http2Sessions: [], http2Streams: [], http1Requests: [] };

const connect = http2.connect;
http2.connect = function (authority, ...rest) {
  const session = connect.call(this, authority, ...rest);
  transport.http2Sessions.push(String(authority));
  const request = session.request;
  session.request = function (headers, ...more) {
    const auth = String(headers?.authorization ?? headers?.Authorization ?? "");
    const entry = {
      method: headers?.[":method"],
      path: headers?.[":path"],
      authority: headers?.[":authority"] ?? null,
      host: headers?.host ?? null,
      signedHeaders: /SignedHeaders=([^,\s]+)/.exec(auth)?.[1]?.split(";") ?? null,
      status: null,
    };
    transport.http2Streams.push(entry);
    const stream = request.call(this, headers, ...more);
    stream.once("response", (h) => {
      entry.status = h[":status"];
    });
    return stream;
  };
  return session;
};

for (const [scheme, mod] of [["http", http], ["https", https]]) {
  const original = mod.request;
  mod.request = function (...args) {
    const first = args[0];
    transport.http1Requests.push(
      `${scheme}: ${typeof first === "string" || first instanceof URL ? first : first?.path ?? "?"}`,
    );
    return original.apply(this, args);
  };
}

// ------------------------------------------------------------------ helpers

const decoder = new TextDecoder();
const snippet = (text, n = 200) => (typeof text === "string" ? text.slice(0, n) : text);

function chatml(user) {
  return `<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n`;
}

function describeError(err) {
  return {
    name: err?.name,
    message: err?.message,
    httpStatusCode: err?.$metadata?.httpStatusCode ?? null,
    requestId: err?.$metadata?.requestId ?? null,
    fault: err?.$fault ?? null,
    stack: err?.$metadata ? undefined : err?.stack,
  };
}

function meta(response) {
  return {
    status: response.$metadata?.httpStatusCode,
    requestId: response.$metadata?.requestId ?? null,
  };
}

function handlerInfo(client) {
  const h = client.config.requestHandler;
  return {
    handler: h?.constructor?.name ?? null,
    handlerProtocol: h?.metadata?.handlerProtocol ?? null,
  };
}

function sdkVersions() {
  const require = createRequire(import.meta.url);
  const version = (pkg) => {
    try {
      return require(`${pkg}/package.json`).version;
    } catch {
      return null;
    }
  };
  return {
    node: process.version,
    "@aws-sdk/client-bedrock-runtime": version("@aws-sdk/client-bedrock-runtime"),
    "@aws-sdk/client-bedrock-agent-runtime": version("@aws-sdk/client-bedrock-agent-runtime"),
    "@smithy/node-http-handler": version("@smithy/node-http-handler"),
  };
}

// ------------------------------------------------------------------ calls

function calls(s, runtime, agent) {
  const question = "What is the capital of France?";
  const messages = [{ role: "user", content: [{ text: question }] }];
  const inferenceConfig = { maxTokens: 24, temperature: 0 };
  const rockQuestion = "What forms when thick basalt lava flows cool and contract?";

  return {
    async converse() {
      const r = await runtime.send(
        new ConverseCommand({ modelId: s.model, messages, inferenceConfig }),
      );
      const text = (r.output?.message?.content ?? []).map((b) => b.text ?? "").join("");
      return {
        ...meta(r),
        role: r.output?.message?.role,
        text: snippet(text),
        stopReason: r.stopReason,
        usage: r.usage,
      };
    },

    async converseStream() {
      const r = await runtime.send(
        new ConverseStreamCommand({ modelId: s.model, messages, inferenceConfig }),
      );
      const events = [];
      let text = "";
      let stopReason = null;
      let usage = null;
      for await (const event of r.stream) {
        const kind = Object.keys(event).find((k) => event[k] !== undefined) ?? "?";
        events.push(kind);
        if (event.contentBlockDelta?.delta?.text) text += event.contentBlockDelta.delta.text;
        if (event.messageStop) stopReason = event.messageStop.stopReason;
        if (event.metadata) usage = event.metadata.usage;
      }
      return {
        ...meta(r),
        events: [...new Set(events)],
        eventCount: events.length,
        lastEvents: events.slice(-2),
        text: snippet(text),
        stopReason,
        usage,
      };
    },

    async invokeModel() {
      const body = JSON.stringify({ prompt: chatml(question), max_gen_len: 16, temperature: 0 });
      const r = await runtime.send(
        new InvokeModelCommand({
          modelId: s.model,
          body: new TextEncoder().encode(body),
          contentType: "application/json",
          accept: "application/json",
        }),
      );
      const out = JSON.parse(decoder.decode(r.body));
      return {
        ...meta(r),
        contentType: r.contentType,
        generation: snippet(out.generation),
        prompt_token_count: out.prompt_token_count,
        generation_token_count: out.generation_token_count,
        stop_reason: out.stop_reason,
      };
    },

    async countTokens() {
      const r = await runtime.send(
        new CountTokensCommand({ modelId: s.model, input: { converse: { messages } } }),
      );
      return { ...meta(r), inputTokens: r.inputTokens };
    },

    async retrieve() {
      const r = await agent.send(
        new RetrieveCommand({
          knowledgeBaseId: s.kb,
          retrievalQuery: { text: rockQuestion },
          retrievalConfiguration: { vectorSearchConfiguration: { numberOfResults: 3 } },
        }),
      );
      const results = r.retrievalResults ?? [];
      return {
        ...meta(r),
        count: results.length,
        results: results.map((x) => ({
          uri: x.location?.s3Location?.uri ?? null,
          score: x.score,
          text: snippet(x.content?.text, 120),
        })),
      };
    },

    async invokeAgent() {
      const sessionId = `js-sdk-${Date.now()}`;
      const r = await agent.send(
        new InvokeAgentCommand({
          agentId: s.agent,
          agentAliasId: "TSTALIASID",
          sessionId,
          inputText: question,
          enableTrace: true,
        }),
      );
      const events = [];
      let text = "";
      for await (const event of r.completion) {
        const kind = Object.keys(event).find((k) => event[k] !== undefined) ?? "?";
        events.push(kind);
        if (event.chunk?.bytes) text += decoder.decode(event.chunk.bytes);
      }
      return {
        ...meta(r),
        sessionId: r.sessionId,
        askedSessionId: sessionId,
        contentType: r.contentType,
        events: [...new Set(events)],
        text: snippet(text),
      };
    },

    async retrieveAndGenerate() {
      const r = await agent.send(
        new RetrieveAndGenerateCommand({
          input: { text: rockQuestion },
          retrieveAndGenerateConfiguration: {
            type: "KNOWLEDGE_BASE",
            knowledgeBaseConfiguration: {
              knowledgeBaseId: s.kb,
              modelArn: `arn:aws:bedrock:${s.region}::foundation-model/${s.model}`,
              retrievalConfiguration: { vectorSearchConfiguration: { numberOfResults: 1 } },
              generationConfiguration: {
                inferenceConfig: { textInferenceConfig: { maxTokens: 60, temperature: 0 } },
              },
            },
          },
        }),
      );
      const citations = r.citations ?? [];
      return {
        ...meta(r),
        sessionId: r.sessionId,
        // Whole (60 tokens at most), so that the citations' spans can be checked.
        text: r.output?.text,
        citations: citations.map((c) => ({
          part: c.generatedResponsePart?.textResponsePart ?? null,
          uris: (c.retrievedReferences ?? []).map((ref) => ref.location?.s3Location?.uri ?? null),
        })),
      };
    },
  };
}

// ------------------------------------------------------------------ main

async function main() {
  let s;
  try {
    s = settings();
  } catch (err) {
    process.stderr.write(`sdk_calls.mjs: ${err.message}\n`);
    process.exit(2);
  }
  const common = {
    endpoint: s.endpoint,
    region: s.region,
    credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
    // No retries: a retried failure would hide a server fault.
    maxAttempts: 1,
  };
  const runtime = new BedrockRuntimeClient(common);
  const agent = new BedrockAgentRuntimeClient(common);
  const table = calls(s, runtime, agent);

  const out = {
    ok: true,
    sdk: sdkVersions(),
    handlers: { runtime: handlerInfo(runtime), agentRuntime: handlerInfo(agent) },
    transport,
    calls: {},
  };
  for (const name of s.calls) {
    try {
      out.calls[name] = { ok: true, ...(await table[name]()) };
    } catch (err) {
      out.ok = false;
      out.calls[name] = { ok: false, error: describeError(err) };
      process.stderr.write(`${name} failed: ${err?.name}: ${err?.message}\n`);
      if (!err?.$metadata) process.stderr.write(`${err?.stack}\n`);
    }
  }
  runtime.destroy();
  agent.destroy();
  process.stdout.write(JSON.stringify(out, null, 2) + "\n");
  process.exitCode = out.ok ? 0 : 1;
}

await main();

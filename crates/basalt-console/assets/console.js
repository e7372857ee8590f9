// The Basalt console's own script: the playground (streamed chat, compare mode, "view
// API request"), charts (uPlot, from each .chart's data-chart attribute), confirmation
// of destructive forms. Text from models and users is only ever set as textContent.
"use strict";

function csrfToken() { return document.body.dataset.csrf || ""; }

// ---- charts ----
function drawCharts() {
  if (typeof uPlot === "undefined") return;
  const palette = ["#1f6feb", "#d1242f", "#bf8700", "#1a7f37"];
  document.querySelectorAll(".chart[data-chart]").forEach((el) => {
    if (el.dataset.drawn) return;
    let spec;
    try { spec = JSON.parse(el.dataset.chart); } catch (e) { return; }
    const data = [spec.x, ...spec.series.map((s) => s.values)];
    const series = [{}, ...spec.series.map((s, i) => ({ label: s.label, scale: s.scale || "y", stroke: palette[i % palette.length], width: 2, spanGaps: false, points: { show: true, size: 4 } }))];
    const width = Math.max(280, el.clientWidth || 480);
    const scales = { x: { time: spec.time !== false } };
    if (spec.x.length === 1) {
      // One point: a window around it, not uPlot's years-wide default.
      const x = spec.x[0], pad = spec.time === false ? 1 : 1800;
      scales.x.range = [x - pad, x + pad];
    }
    const axes = [{}, { size: 60 }];
    const second = spec.series.find((s) => s.scale && s.scale !== "y");
    if (second) {
      scales[second.scale] = { auto: true };
      axes.push({ scale: second.scale, side: 1, size: 70, grid: { show: false } });
    }
    new uPlot({ width, height: 200, series, axes, scales }, data, el);
    el.dataset.drawn = "1";
    el.setAttribute("role", "img");
    el.setAttribute("aria-label", spec.series.map((s) => s.label).join(", ") + " chart");
  });
}

// ---- destructive forms ----
function confirmForms() {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (e) => {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    });
  });
}

// ---- playground ----
const playground = { histories: { a: [], b: [] } };

function formSettings(form) {
  const num = (id) => { const v = form.querySelector(id).value.trim(); return v === "" ? null : Number(v); };
  const stop = form.querySelector("#stop").value.split("\n").map((s) => s.trim()).filter((s) => s);
  const body = { system: form.querySelector("#system").value, stop };
  const t = num("#temperature"), p = num("#top-p"), m = num("#max-tokens");
  if (t !== null) body.temperature = t;
  if (p !== null) body.topP = p;
  if (m !== null) body.maxTokens = m;
  const g = form.querySelector("#guardrail").value;
  if (g) { body.guardrailId = g; body.guardrailVersion = form.querySelector("#guardrail-version").value || "DRAFT"; }
  return body;
}

function bubble(transcript, role, text) {
  const div = document.createElement("div");
  div.className = "turn " + role;
  const who = document.createElement("strong");
  who.textContent = role === "user" ? "You" : "Model";
  const p = document.createElement("p");
  p.className = "text";
  p.textContent = text;
  div.append(who, p);
  transcript.append(div);
  return p;
}

async function streamInto(column, model, settings, prompt) {
  const section = document.getElementById("answer-" + column);
  const transcript = section.querySelector(".transcript");
  const stats = section.querySelector(".stats");
  const trace = section.querySelector(".trace");
  section.querySelector(".model-name").textContent = model;
  bubble(transcript, "user", prompt);
  const out = bubble(transcript, "assistant", "");
  out.classList.add("streaming");
  const history = playground.histories[column];
  const messages = [...history, { role: "user", text: prompt }];
  const started = performance.now();
  let firstToken = null, answer = "", usage = null, latency = null, cost = null, failed = null, stopReason = null;
  stats.textContent = "waiting…";
  try {
    const response = await fetch("/console/playground/stream", {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": csrfToken() },
      body: JSON.stringify({ model, messages, ...settings }),
      credentials: "same-origin",
    });
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).message || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message", data = "";
        for (const line of frame.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        let payload = {};
        try { payload = JSON.parse(data); } catch (e) { continue; }
        if (event === "contentBlockDelta" && payload.delta && typeof payload.delta.text === "string") {
          if (firstToken === null) firstToken = performance.now() - started;
          answer += payload.delta.text;
          out.textContent = answer;
        } else if (event === "messageStop") {
          stopReason = payload.stopReason;
        } else if (event === "metadata") {
          usage = payload.usage; latency = payload.metrics && payload.metrics.latencyMs;
          if (payload.trace && payload.trace.guardrail) {
            trace.hidden = false;
            trace.querySelector("pre").textContent = JSON.stringify(payload.trace.guardrail, null, 2);
          }
        } else if (event === "cost") {
          cost = payload.usd;
        } else if (event === "error") {
          failed = (payload.type ? payload.type + ": " : "") + payload.message;
        }
      }
    }
  } catch (e) {
    failed = e.message;
  }
  out.classList.remove("streaming");
  if (failed) {
    out.classList.add("error");
    out.textContent = answer + (answer ? "\n" : "") + failed;
    stats.textContent = "failed";
    return;
  }
  history.push({ role: "user", text: prompt }, { role: "assistant", text: answer });
  const parts = [];
  if (usage) parts.push(`${usage.inputTokens} tokens in, ${usage.outputTokens} out`);
  if (latency != null) parts.push(`latency ${latency} ms`);
  if (firstToken != null) parts.push(`first token ${Math.round(firstToken)} ms`);
  if (cost != null) parts.push(`cost $${cost.toFixed(6)}`);
  if (stopReason) parts.push(`stop: ${stopReason}`);
  stats.textContent = parts.join(" · ");
  stats.dataset.done = "1";
}

function pyString(s) { return JSON.stringify(s); }

function updateCode(form) {
  const model = form.querySelector("#model").value;
  const settings = formSettings(form);
  const prompt = form.querySelector("#prompt").value || "Hello";
  const origin = window.location.origin;
  const region = form.dataset.region || "us-east-1";
  const messages = [...playground.histories.a, { role: "user", text: prompt }]
    .map((m) => ({ role: m.role, content: [{ text: m.text }] }));
  const inference = {};
  if (settings.temperature != null) inference.temperature = settings.temperature;
  if (settings.topP != null) inference.topP = settings.topP;
  if (settings.maxTokens != null) inference.maxTokens = settings.maxTokens;
  if (settings.stop.length) inference.stopSequences = settings.stop;
  const req = { modelId: model, messages };
  if (settings.system) req.system = [{ text: settings.system }];
  if (Object.keys(inference).length) req.inferenceConfig = inference;
  if (settings.guardrailId) req.guardrailConfig = { guardrailIdentifier: settings.guardrailId, guardrailVersion: settings.guardrailVersion, trace: "enabled" };
  const json = JSON.stringify(req, null, 4);
  document.getElementById("code-boto3").textContent =
`import boto3, json
# Bearer tokens go over https only (botocore): use basalt serve --tls self-signed,
# or SigV4 with an access key and secret instead.
client = boto3.client("bedrock-runtime", region_name=${pyString(region)},
                      endpoint_url=${pyString(origin)})
request = json.loads(${pyString(json)})
for event in client.converse_stream(**request)["stream"]:
    if "contentBlockDelta" in event:
        print(event["contentBlockDelta"]["delta"].get("text", ""), end="", flush=True)`;
  const oaMessages = [];
  if (settings.system) oaMessages.push({ role: "system", content: settings.system });
  for (const m of [...playground.histories.a, { role: "user", text: prompt }]) oaMessages.push({ role: m.role, content: m.text });
  const oa = { model, messages: oaMessages, stream: true };
  if (settings.temperature != null) oa.temperature = settings.temperature;
  if (settings.topP != null) oa.top_p = settings.topP;
  if (settings.maxTokens != null) oa.max_tokens = settings.maxTokens;
  if (settings.stop.length) oa.stop = settings.stop;
  document.getElementById("code-openai").textContent =
`from openai import OpenAI
client = OpenAI(base_url=${pyString(origin + "/v1")}, api_key="bsk-…your bearer token…")
stream = client.chat.completions.create(**${JSON.stringify(oa, null, 4)})
for chunk in stream:
    print(chunk.choices[0].delta.content or "", end="", flush=True)`;
  const body = { ...req }; delete body.modelId;
  document.getElementById("code-curl").textContent =
`curl -sS ${origin}/model/${encodeURIComponent(model)}/converse \\
  --aws-sigv4 "aws:amz:${region}:bedrock" -u "$ACCESS_KEY_ID:$SECRET_ACCESS_KEY" \\
  -H 'content-type: application/json' \\
  -d '${JSON.stringify(body).replace(/'/g, "'\\''")}'`;
}

function setupPlayground() {
  const form = document.getElementById("playground");
  if (!form) return;
  const compare = form.querySelector("#compare");
  const modelB = form.querySelector("#model-b");
  compare.addEventListener("change", () => {
    modelB.disabled = !compare.checked;
    document.getElementById("answer-b").hidden = !compare.checked;
  });
  form.querySelector("#prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
  });
  form.querySelector("#clear").addEventListener("click", () => {
    playground.histories = { a: [], b: [] };
    document.querySelectorAll("#answers .transcript, #answers .stats").forEach((el) => { el.textContent = ""; });
    form.querySelector("#prompt").focus();
  });
  const view = form.querySelector("#view-code");
  view.addEventListener("click", () => {
    const pane = document.getElementById("api-request");
    pane.hidden = !pane.hidden;
    view.setAttribute("aria-expanded", String(!pane.hidden));
    if (!pane.hidden) updateCode(form);
  });
  form.addEventListener("input", () => { if (!document.getElementById("api-request").hidden) updateCode(form); });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const prompt = form.querySelector("#prompt").value.trim();
    if (!prompt) return;
    const send = form.querySelector("#send");
    send.setAttribute("aria-busy", "true"); send.disabled = true;
    const settings = formSettings(form);
    const runs = [streamInto("a", form.querySelector("#model").value, settings, prompt)];
    if (compare.checked) runs.push(streamInto("b", modelB.value, settings, prompt));
    form.querySelector("#prompt").value = "";
    await Promise.all(runs);
    send.removeAttribute("aria-busy"); send.disabled = false;
    form.querySelector("#prompt").focus();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  drawCharts();
  confirmForms();
  setupPlayground();
});
document.addEventListener("htmx:afterSwap", drawCharts);

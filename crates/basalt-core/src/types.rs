//! Provider-independent request and response types.

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One block of message content.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentBlock {
    Text(String),
    /// A block kind this request carries that the chosen model may not accept
    /// (`image`, `document`, `toolUse`, ...); named for the error message.
    Other {
        kind: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

/// Generation settings; `None` means the model's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InferenceParams {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub stop_sequences: Vec<String>,
    pub seed: Option<u32>,
}

/// A chat request (Bedrock Converse, OpenAI chat completions).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model_id: String,
    pub system: Vec<String>,
    pub messages: Vec<Message>,
    pub params: InferenceParams,
    /// Tool definitions were sent (the model must support tools).
    pub has_tools: bool,
}

/// A raw prompt completion (a model's native InvokeModel body, e.g. Llama's `prompt`).
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub model_id: String,
    pub prompt: String,
    pub params: InferenceParams,
}

/// Why generation stopped (Bedrock's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    ModelContextWindowExceeded,
}

impl StopReason {
    pub fn as_bedrock(self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::ToolUse => "tool_use",
            StopReason::ModelContextWindowExceeded => "model_context_window_exceeded",
        }
    }
}

/// Token counts of one invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// Input tokens served from the prefix cache.
    pub cache_read_input_tokens: u32,
}

impl TokenUsage {
    pub fn total(&self) -> u32 {
        self.input_tokens + self.output_tokens
    }
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub text: String,
    pub stop_reason: StopReason,
    pub usage: TokenUsage,
    pub latency_ms: u64,
    /// The catalog entry's lifecycle is LEGACY.
    pub legacy: bool,
}

/// One event of a streamed generation.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationDelta {
    Text(String),
    End {
        stop_reason: StopReason,
        usage: TokenUsage,
        latency_ms: u64,
        first_token_ms: Option<u64>,
    },
    Error(crate::CoreError),
}

/// Embeddings of one request, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of each input.
    pub tokens: Vec<u32>,
    pub legacy: bool,
}

//! Provider-independent request and response types, and the error every layer above
//! the engines speaks. The bottom of the dependency graph: the core, the remote
//! provider adapters and the HTTP edge all use these types; this crate uses none of
//! theirs.

mod error;

pub use error::CoreError;

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
    /// A tool call the assistant made earlier in the conversation.
    ToolUse(ToolCall),
    /// The caller's answer to a tool call.
    ToolResult {
        tool_use_id: String,
        content: String,
        is_error: bool,
    },
    /// An image (decoded bytes), for models whose catalog entry takes `IMAGE` input.
    Image(Image),
    /// A block kind this request carries that the chosen model may not accept
    /// (`document`, `video`, ...); named for the error message.
    Other {
        kind: String,
    },
}

/// An image in a message.
#[derive(Clone, PartialEq)]
pub struct Image {
    /// `png`, `jpeg`, `gif` or `webp` (Bedrock's names).
    pub format: ImageFormat,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Image({:?}, {} bytes)", self.format, self.data.len())
    }
}

/// The image formats Bedrock's Converse takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl ImageFormat {
    /// Bedrock's name (`png`, `jpeg`, `gif`, `webp`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Gif => "gif",
            Self::Webp => "webp",
        }
    }

    /// From Bedrock's name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "png" => Self::Png,
            "jpeg" => Self::Jpeg,
            "gif" => Self::Gif,
            "webp" => Self::Webp,
            _ => return None,
        })
    }

    /// The MIME type (`image/png`, ...).
    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    /// From a MIME type.
    pub fn from_mime(mime: &str) -> Option<Self> {
        Self::from_name(mime.strip_prefix("image/")?.trim())
            .or_else(|| (mime.trim() == "image/jpg").then_some(Self::Jpeg))
    }
}

impl Image {
    /// The image as base64.
    pub fn base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.data)
    }

    /// The image as a `data:` URL.
    pub fn data_url(&self) -> String {
        format!("data:{};base64,{}", self.format.mime(), self.base64())
    }
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
    /// How the call is scheduled against other traffic (set by the core from the
    /// call's inference type, never by a caller).
    pub priority: Priority,
}

/// A closed set of protocol values, each with its one spelling (on the wire, in the
/// catalog, in stored rows): `as_str`, `parse`, `ALL` and `Display`. Parse at the
/// boundary (config, edge, store rows); compare the enum inside.
#[macro_export]
macro_rules! named_values {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value's spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The value spelled `text`, if any.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }

            /// Every spelling, comma-separated (for error messages).
            pub fn spellings() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_values! {
    /// How a call is bought: Bedrock's inference types and batch jobs' records
    /// (`BATCH`: outside on-demand quotas, at the batch price).
    pub enum InferenceType {
        OnDemand => "ON_DEMAND",
        Provisioned => "PROVISIONED",
        Batch => "BATCH",
    }
}

impl InferenceType {
    /// How a local engine schedules a call of this type.
    pub fn priority(self) -> Priority {
        match self {
            Self::OnDemand => Priority::Standard,
            Self::Provisioned => Priority::Reserved,
            Self::Batch => Priority::Background,
        }
    }
}

named_values! {
    /// How an invocation ended, for metering.
    pub enum Outcome {
        Success => "success",
        /// The caller's mistake (validation, not found, access, quota).
        ClientError => "client_error",
        /// Refused for capacity, rate or budget.
        Throttled => "throttled",
        ServerError => "server_error",
        /// The client went away before the answer was complete.
        Cancelled => "cancelled",
    }
}

named_values! {
    /// What a model takes or gives (Bedrock's modality names).
    pub enum Modality {
        Text => "TEXT",
        Image => "IMAGE",
        Embedding => "EMBEDDING",
    }
}

named_values! {
    /// How a model may be customized (Bedrock's customization types).
    pub enum CustomizationType {
        FineTuning => "FINE_TUNING",
        ContinuedPreTraining => "CONTINUED_PRE_TRAINING",
        Distillation => "DISTILLATION",
    }
}

/// Scheduling class of a call on a local engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Priority {
    /// Batch work: admitted to a slot only when nothing else is waiting.
    Background,
    /// On-demand traffic.
    #[default]
    Standard,
    /// Provisioned throughput: admitted first, and while it decodes other work
    /// shares the engine's steps only as the engine's reservation allows.
    Reserved,
}

/// A tool the model may call; `input_schema` is a JSON schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: Option<String>,
    pub input_schema: serde_json::Value,
}

/// Whether and which tool must be called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides between text and a tool call.
    Auto,
    /// The model must call one of the tools.
    Any,
    /// The model must call this tool.
    Tool(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolConfig {
    pub tools: Vec<ToolSpec>,
    pub choice: ToolChoice,
}

/// A tool call produced by the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub input: serde_json::Value,
}

/// A chat request (Bedrock Converse, OpenAI chat completions).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model_id: String,
    pub system: Vec<String>,
    pub messages: Vec<Message>,
    pub params: InferenceParams,
    pub tools: Option<ToolConfig>,
    /// The output must be JSON valid against this schema (structured output).
    pub response_schema: Option<serde_json::Value>,
    /// The caller receives the answer as a stream (ConverseStream, `stream: true`).
    /// Providers may use it to pick their upstream's mode; the answer is the same.
    pub stream: bool,
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
    /// A provider's own content filter stopped the output.
    ContentFiltered,
    /// A guardrail blocked the input or the output.
    GuardrailIntervened,
}

impl StopReason {
    pub fn as_bedrock(self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::ToolUse => "tool_use",
            StopReason::ModelContextWindowExceeded => "model_context_window_exceeded",
            StopReason::ContentFiltered => "content_filtered",
            StopReason::GuardrailIntervened => "guardrail_intervened",
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
    /// Tool calls (then `stop_reason` is `ToolUse` and `text` is empty).
    pub tool_calls: Vec<ToolCall>,
    pub stop_reason: StopReason,
    pub usage: TokenUsage,
    pub latency_ms: u64,
    /// The model that answered: the requested one, or one of its fallbacks.
    pub model_id: String,
}

/// One event of a streamed generation.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationDelta {
    Text(String),
    /// A complete tool call (sent before `End`).
    ToolCall(ToolCall),
    End {
        stop_reason: StopReason,
        usage: TokenUsage,
        latency_ms: u64,
        first_token_ms: Option<u64>,
    },
    Error(CoreError),
}

/// Embeddings of one request, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of each input.
    pub tokens: Vec<u32>,
}

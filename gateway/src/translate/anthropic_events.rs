//! The events of an Anthropic Messages stream, as the translator to the hub reads them
//! (unknown events and block types are tolerated).

use serde::Deserialize;

use super::anthropic::AUsage;

/// One event.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Event {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        #[serde(default)]
        index: Option<u32>,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<DeltaUsage>,
    },
    MessageStop {},
    Ping {},
    Error {
        error: ErrorBody,
    },
    #[serde(other)]
    Unknown,
}

/// The message `message_start` opens.
#[derive(Deserialize)]
pub(super) struct StartMessage {
    pub(super) id: String,
    pub(super) model: String,
    #[serde(default)]
    pub(super) usage: AUsage,
}

/// The block `content_block_start` opens (only tool calls need anything from it).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum StartBlock {
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

/// What `content_block_delta` adds to a block.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    #[serde(other)]
    Other,
}

/// `message_delta`'s stop reason.
#[derive(Deserialize)]
pub(super) struct MessageDeltaBody {
    pub(super) stop_reason: Option<String>,
}

/// `message_delta`'s output token count.
#[derive(Deserialize)]
pub(super) struct DeltaUsage {
    pub(super) output_tokens: Option<u64>,
    /// The final input counts, which newer API versions repeat here (larger than
    /// `message_start`'s when server tools ran).
    pub(super) input_tokens: Option<u64>,
    pub(super) cache_read_input_tokens: Option<u64>,
    pub(super) cache_creation_input_tokens: Option<u64>,
}

/// An `error` event's error.
#[derive(Deserialize)]
pub(super) struct ErrorBody {
    #[serde(rename = "type")]
    pub(super) error_type: String,
    pub(super) message: String,
}

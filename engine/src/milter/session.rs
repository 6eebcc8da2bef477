//! Conversation stub (being written).
/// x
pub struct Conversation;
/// x
pub struct ConversationError;
/// x
pub struct Output;

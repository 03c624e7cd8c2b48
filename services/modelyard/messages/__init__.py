"""The Anthropic Messages core: Messages requests and replies over a Chat Completions upstream.

Plain dicts in and out, shaped exactly as the anthropic SDK's types (`anthropic.types`: MessageCreateParams,
Message, RawMessageStreamEvent); no pydantic model is built on the hot path. Beside `translate/` (the
Responses core), whose options, think-tag splitter and validation helpers it shares.
"""

from .errors import error_body, error_type
from .request import THINKING_STYLES, messages_to_chat
from .stream import MessageTranslator, chat_to_message, new_message_id

__all__ = [
    "THINKING_STYLES",
    "MessageTranslator",
    "chat_to_message",
    "error_body",
    "error_type",
    "messages_to_chat",
    "new_message_id",
]

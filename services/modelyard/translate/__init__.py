"""The translation core: OpenAI Responses API requests and replies over a Chat Completions upstream.

Plain dicts in and out, shaped exactly as the openai SDK's types (`openai.types.responses`) and the
OpenAPI spec's schemas; no pydantic model is built on the hot path.
"""

from .ids import new_response_id
from .options import ChatRequest, TranslateOptions
from .request import responses_to_chat
from .response import chat_to_response, overflow_response
from .stream import StreamTranslator

__all__ = [
    "ChatRequest",
    "StreamTranslator",
    "TranslateOptions",
    "chat_to_response",
    "new_response_id",
    "overflow_response",
    "responses_to_chat",
]

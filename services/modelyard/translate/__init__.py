"""The translation core: OpenAI Responses API requests and replies over a Chat Completions upstream.

`responses_to_chat(body, opts)` checks a Responses request and returns its `Translation`: the chat body
to send, and `stream()`, `reply()`, `overflow()`, `overflow_events()` for what comes back. Plain dicts in
and out, shaped exactly as the openai SDK's types (`openai.types.responses`) and the OpenAPI spec's
schemas; no pydantic model is built on the hot path.
"""

from . import sizes
from .ids import new_response_id
from .options import ChatRequest, TranslateOptions, Translation
from .request import check_responses_request, responses_to_chat
from .stream import StreamTranslator

__all__ = [
    "ChatRequest",
    "StreamTranslator",
    "TranslateOptions",
    "Translation",
    "check_responses_request",
    "new_response_id",
    "responses_to_chat",
    "sizes",
]

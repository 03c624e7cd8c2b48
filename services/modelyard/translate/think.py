"""Reasoning inside content (`<think>…</think>`), split out incrementally.

Only content that starts with the opening tag (after whitespace) counts: anything else is passed on as
soon as it cannot be the start of the tag, so nothing is held back longer than a tag's length. Content
whose template put the opening tag in the prompt (it starts with the reasoning and only closes the tag)
is left as it is; such an upstream should run a reasoning parser. Whitespace right after either tag is
dropped, as reasoning parsers do.
"""

from __future__ import annotations

_START, _LEAD, _REASONING, _AFTER, _CONTENT = range(5)


class ThinkSplitter:
    def __init__(self, open_tag: str, close_tag: str) -> None:
        self.open_tag, self.close_tag = open_tag, close_tag
        self.state = _START
        self.held = ""  # text that may still turn out to be (part of) a tag

    def feed(self, text: str) -> list[tuple[str, str]]:
        """Content text in -> ("reasoning" | "message", text) pieces out, in order."""
        if self.state == _CONTENT:
            return [("message", text)]
        out: list[tuple[str, str]] = []
        text, self.held = self.held + text, ""
        if self.state == _START:
            head = text.lstrip()
            if self.open_tag.startswith(head):  # undecided yet (also: only whitespace so far)
                self.held = text
                return out
            if not head.startswith(self.open_tag):
                self.state = _CONTENT
                return [("message", text)]
            self.state, text = _LEAD, head[len(self.open_tag) :]
        if self.state == _LEAD:
            text = text.lstrip()
            if not text:
                return out
            self.state = _REASONING
        if self.state == _REASONING:
            end = text.find(self.close_tag)
            if end < 0:
                keep = _partial_suffix(text, self.close_tag)
                self.held, text = text[len(text) - keep :], text[: len(text) - keep]
                if text:
                    out.append(("reasoning", text))
                return out
            if end:
                out.append(("reasoning", text[:end]))
            self.state, text = _AFTER, text[end + len(self.close_tag) :]
        text = text.lstrip()  # _AFTER
        if text:
            self.state = _CONTENT
            out.append(("message", text))
        return out

    def finish(self) -> list[tuple[str, str]]:
        """What is still held when the content ends: an unfinished tag is plain text after all."""
        held, self.held = self.held, ""
        if not held:
            return []
        return [("reasoning" if self.state == _REASONING else "message", held)]


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a beginning of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0

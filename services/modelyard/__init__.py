"""modelyard: one OpenAI-compatible front door to a policy model, however it is served."""

__version__ = "0.1.0"

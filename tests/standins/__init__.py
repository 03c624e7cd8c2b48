"""Stand-in provider servers (OpenAI, Azure OpenAI, OpenRouter) for the hosted-backend tests."""

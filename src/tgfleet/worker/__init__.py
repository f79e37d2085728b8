"""Account runtime: supervisor, Telegram adapter, error classification, retries."""

"""Accounts: the Telegram user accounts under management (key material lives in vault)."""

"""Vault: session formats, envelope encryption under a rotating keyring, audited access."""

"""Alerting (DESIGN §10): alerts from account events and fleet conditions, routed, grouped,
inhibited and silenced with Alertmanager's semantics, delivered to Telegram, webhooks or an
external Alertmanager."""

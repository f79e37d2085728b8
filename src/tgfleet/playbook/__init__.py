"""Playbooks: versioned YAML reply rules, their engine and the dry run."""

"""Test doubles shared across test packages (the fake Anthropic Messages API server)."""

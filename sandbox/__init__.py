"""Sandbox: the immutable contract, the static guard, the isolated runner, the trusted harness and verifier.

Importing this package must never import mlx: the orchestrator process uses it.
"""

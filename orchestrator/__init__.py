"""The research loop: task schema, run directory, ledger, ratchet, roles, providers, CLI, reports.

Never imports mlx: all model compute happens in sandbox subprocesses.
"""

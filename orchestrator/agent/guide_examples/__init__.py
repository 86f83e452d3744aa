"""Worked experiment modules shown to the executor in the engine guide.

They are read as text (never imported by the orchestrator) and run through the sandbox in tests.
"""

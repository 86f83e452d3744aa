"""Peer benchmark: this engine against TransformerLens and plain PyTorch, each in its own process.

Entry: tests/bench/bench_peers.py (or `python -m tests.bench.peers`). Workers: engine_worker (MLX,
engine venv) and torch_worker (torch/TransformerLens, the peers venv from requirements-peers.txt).
"""

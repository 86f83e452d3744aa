"""LLM clients behind one interface (anthropic, mlx); the builtin agent needs none."""

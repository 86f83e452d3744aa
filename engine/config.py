"""Model facts every method needs, in TransformerLens' vocabulary."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ModelConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    architecture: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    rms_norm_eps: float

    @classmethod
    def from_mlx_lm(cls, name: str, config: dict) -> "ModelConfig":
        n_heads = int(config["num_attention_heads"])
        d_model = int(config["hidden_size"])
        return cls(
            name=name,
            architecture=str(config.get("model_type", "unknown")),
            n_layers=int(config["num_hidden_layers"]),
            d_model=d_model,
            n_heads=n_heads,
            n_kv_heads=int(config.get("num_key_value_heads") or n_heads),
            d_head=int(config.get("head_dim") or d_model // n_heads),
            d_mlp=int(config["intermediate_size"]),
            d_vocab=int(config["vocab_size"]),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-5)),
        )

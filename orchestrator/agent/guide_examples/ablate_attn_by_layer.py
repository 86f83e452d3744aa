"""Which attention layers does the clean behaviour need?

Zero-ablate the attention output (blocks.L.hook_attn_out) at the final position of the clean run,
one layer at a time, and measure how far the contract metric drops.
"""

import engine


def mean(values):
    return sum(values) / len(values)


def run(ctx):
    model = ctx.model
    n_layers = model.cfg.n_layers
    clean = mean(ctx.metric(model.forward(ctx.clean_tokens, logit_positions=[-1])))
    drops = []
    for layer in range(n_layers):
        ablation = engine.Ablate(hook=f"blocks.{layer}.hook_attn_out", mode="zero", positions=[-1])
        logits = model.run_with_hooks(ctx.clean_tokens, [ablation], logit_positions=[-1])
        drops.append(clean - mean(ctx.metric(logits)))
    top = sorted(range(n_layers), key=lambda layer: drops[layer], reverse=True)[:3]
    return {
        "summary": f"zero-ablating attn_out at the final position hurts most at layers {top} "
        f"(drops {[round(drops[layer], 3) for layer in top]})",
        "measurements": {"clean_metric": clean, "drop_by_layer": drops, "top_layers": top},
        "claims": [
            {
                "statement": f"attention output at layers {top}, final position, is needed for the clean answer",
                "interventions": [
                    {"kind": "ablate", "mode": "zero", "hook": f"blocks.{layer}.hook_attn_out", "positions": [-1]}
                    for layer in top
                ],
                "target": "clean",
                "source": "clean",
                "expected_direction": "decrease",
                "min_effect": 0.1,
            }
        ],
    }

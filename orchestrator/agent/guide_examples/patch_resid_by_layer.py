"""Which layer's residual stream, at the final position, carries the answer?

Patch blocks.L.hook_resid_pre at the last position from the clean run into the corrupted run, for
every layer L, and measure the fraction of the clean-corrupted metric gap each patch restores.
"""

import engine


def mean(values):
    return sum(values) / len(values)


def run(ctx):
    model = ctx.model
    n_layers = model.cfg.n_layers
    hooks = [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)]
    clean_logits, clean_cache = model.run_with_cache(ctx.clean_tokens, names=hooks)
    clean = mean(ctx.metric(clean_logits))
    corrupted = mean(ctx.metric(model.forward(ctx.corrupted_tokens, logit_positions=[-1])))
    gap = clean - corrupted
    restored = []
    for hook in hooks:
        patch = engine.Patch(hook=hook, positions=[-1])
        logits = model.run_with_hooks(ctx.corrupted_tokens, [patch], source=clean_cache, logit_positions=[-1])
        restored.append((mean(ctx.metric(logits)) - corrupted) / gap if gap else 0.0)
    best = max(range(n_layers), key=lambda layer: restored[layer])
    return {
        "summary": f"patching resid_pre at the final position restores {restored[best]:.2f} of the gap "
        f"at layer {best} (clean {clean:.2f}, corrupted {corrupted:.2f})",
        "measurements": {
            "clean_metric": clean,
            "corrupted_metric": corrupted,
            "restored_by_layer": restored,
            "best_layer": best,
        },
        "claims": [
            {
                "statement": f"the clean residual stream at layer {best}, final position, restores the answer",
                "interventions": [{"kind": "patch", "hook": hooks[best], "positions": [-1]}],
                "target": "corrupted",
                "source": "clean",
                "expected_direction": "increase",
                "min_effect": 0.2,
            }
        ],
    }

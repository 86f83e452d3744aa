"""The ratchet's gate: keep a claim only if the verifier's held-out figures clear it.

Keep rule: the bootstrap CI of the mean per-pair effect lies entirely beyond ``min_effect`` in the
claim's expected direction, AND the multiplicity-corrected p-value of the two-sample permutation
test (effects vs null samples) is strictly below ``alpha``. The CI answers "is the effect big
enough?", the permutation test "is it beyond what null interventions of the same shape do?"
(see significance.py for why that test, not the one-sample one, decides).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from orchestrator.analysis.bootstrap import CIMethod, bootstrap_ci
from orchestrator.analysis.errors import InvalidParameterError, NonFiniteInputError
from orchestrator.analysis.inputs import (
    ArrayLike,
    Direction,
    as_finite_1d,
    check_count,
    check_probability,
    check_seed,
    direction_sign,
)
from orchestrator.analysis.multiple import CORRECTION_LABELS, Correction, adjust_p_values, check_p_values
from orchestrator.analysis.noise import NoiseFloor, effect_in_noise_units, noise_floor
from orchestrator.analysis.significance import SignificanceResult, permutation_test


class Verdict(BaseModel):
    """The gate's decision on one claim, with every figure it rests on (JSON-safe: no inf/NaN)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kept: bool
    effect: float  # mean per-pair effect on the held-out pairs (signed)
    ci_low: float
    ci_high: float
    p_value: float  # raw one-sided permutation p-value
    adjusted_p: float  # after correction over the claims tested so far (and any planned padding)
    noise_floor_mean: float
    noise_floor_std: float
    z_vs_noise: float | None  # (effect - noise mean) / noise std; None if the null has no spread
    n_pairs: int
    n_null: int
    reason: str
    # How the decision was reached, so a reader can re-derive it.
    expected_direction: Direction
    min_effect: float
    alpha: float
    correction: Correction
    n_tests: int  # size of the family the p-value was corrected over
    confidence: float
    ci_method: CIMethod
    test: str
    exact_p: bool
    ci_clears_min_effect: bool
    significant: bool
    seed: int


def decide(
    effects: ArrayLike,
    null_samples: ArrayLike,
    *,
    claim_direction: Direction,
    min_effect: float,
    alpha: float,
    prior_p_values: Sequence[float],
    correction: Correction,
    seed: int,
    confidence: float = 0.95,
    ci_method: CIMethod = "bca",
    n_bootstrap: int = 10_000,
    n_permutations: int = 10_000,
    planned_tests: int | None = None,
) -> Verdict:
    """Decide whether a claim is kept from its held-out per-pair effects and the null samples.

    ``prior_p_values`` are the raw p-values of every claim tested earlier in the run, kept or not
    (passing only kept ones under-corrects). ``planned_tests`` optionally pads the family to the
    run's declared claim budget (see multiple.py). BCa is the default CI because per-pair effects
    are often skewed (a few pairs carry most of the effect). Deterministic given ``seed``.
    Raises NonFiniteInputError on NaN/inf and InsufficientDataError on fewer than 2 pairs or 2
    null samples: the caller records a failed verification; nothing is kept by default.
    """
    e = as_finite_1d(effects, name="effects", min_size=2)
    z = as_finite_1d(null_samples, name="null_samples", min_size=2)
    sign = direction_sign(claim_direction)
    min_effect = _check_min_effect(min_effect)
    alpha = check_probability(alpha, name="alpha")
    if prior_p_values is None:
        raise InvalidParameterError("prior_p_values is None; pass [] for the first claim of a run")
    prior = check_p_values(list(prior_p_values))
    if correction not in CORRECTION_LABELS:
        raise InvalidParameterError(f"correction must be 'holm' or 'bh', got {correction!r}")
    seed = check_seed(seed)
    boot_seed, perm_seed = _child_seeds(seed, 2)

    effect, ci_low, ci_high = bootstrap_ci(
        e, n_resamples=n_bootstrap, confidence=confidence, seed=boot_seed, method=ci_method
    )
    sig = permutation_test(e, z, direction=claim_direction, n_permutations=n_permutations, seed=perm_seed)

    family = [*prior.tolist(), sig.p_value]
    if planned_tests is not None:
        planned_tests = check_count(planned_tests, name="planned_tests", minimum=1)
        if len(family) > planned_tests:
            raise InvalidParameterError(
                f"this is claim {len(family)} of the run but planned_tests={planned_tests}; "
                "raise the run's planned claim budget (the correction's guarantee assumes it is not exceeded)"
            )
        family += [1.0] * (planned_tests - len(family))
    adjusted = adjust_p_values(family, method=correction, alpha=alpha)
    adjusted_p = adjusted.adjusted[prior.size]
    significant = adjusted.reject[prior.size]

    floor = noise_floor(z)
    z_vs_noise = effect_in_noise_units(effect, floor.mean, floor.std)
    ci_clears = ci_low > min_effect if sign > 0 else ci_high < -min_effect
    kept = bool(ci_clears and significant)

    reason = _reason(
        kept=kept,
        ci_clears=ci_clears,
        significant=significant,
        direction=claim_direction,
        effect=effect,
        ci_low=ci_low,
        ci_high=ci_high,
        confidence=confidence,
        ci_method=ci_method,
        min_effect=min_effect,
        effects=e,
        floor=floor,
        z_vs_noise=z_vs_noise,
        sig=sig,
        adjusted_p=adjusted_p,
        correction=correction,
        alpha=alpha,
        n_tests=len(family),
    )
    return Verdict(
        kept=kept,
        effect=effect,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=sig.p_value,
        adjusted_p=adjusted_p,
        noise_floor_mean=floor.mean,
        noise_floor_std=floor.std,
        z_vs_noise=z_vs_noise,
        n_pairs=int(e.size),
        n_null=int(z.size),
        reason=reason,
        expected_direction=claim_direction,
        min_effect=min_effect,
        alpha=alpha,
        correction=correction,
        n_tests=len(family),
        confidence=confidence,
        ci_method=ci_method,
        test=sig.test,
        exact_p=sig.exact,
        ci_clears_min_effect=bool(ci_clears),
        significant=bool(significant),
        seed=seed,
    )


def _reason(
    *,
    kept: bool,
    ci_clears: bool,
    significant: bool,
    direction: Direction,
    effect: float,
    ci_low: float,
    ci_high: float,
    confidence: float,
    ci_method: CIMethod,
    min_effect: float,
    effects: np.ndarray,
    floor: NoiseFloor,
    z_vs_noise: float | None,
    sig: SignificanceResult,
    adjusted_p: float,
    correction: Correction,
    alpha: float,
    n_tests: int,
) -> str:
    """One readable line that leads with the figure that decided, then the full evidence."""
    label = CORRECTION_LABELS[correction]
    if direction == "increase":
        low, mine = _pair(ci_low, min_effect)
        bound = f"CI lower bound {low} {'>' if ci_clears else 'does not exceed'} min_effect {mine}"
    else:
        high, mine = _pair(ci_high, -min_effect)
        bound = f"CI upper bound {high} {'<' if ci_clears else 'is not below'} -min_effect {mine}"
    adj, alpha_s = _pair(adjusted_p, alpha, digits=2)
    p_clause = f"{label}-adjusted p {adj} {'<' if significant else 'is not below'} alpha {alpha_s}"
    if kept:
        head = f"kept: {bound} and {p_clause}"
    else:
        failed = [c for c, ok in ((bound, ci_clears), (p_clause, significant)) if not ok]
        head = "not kept: " + " and ".join(failed)

    noise_sds = "noise floor has no spread" if z_vs_noise is None else f"{_num(z_vs_noise)} noise SDs"
    details = (
        f"effect {_num(effect)} [{_num(ci_low)}, {_num(ci_high)}] ({confidence:.0%} {_CI_LABELS[ci_method]} CI, expected {direction}) "
        f"on {effects.size} held-out pairs; noise floor {floor.mean:.2g}±{floor.std:.2g} over {floor.n} null samples "
        f"({noise_sds}); p={_p(sig.p_value)} ({'exact' if sig.exact else 'Monte Carlo'}, "
        f"{sig.n_rearrangements} rearrangements), {label}-adjusted {_p(adjusted_p)} over {n_tests} claim(s)"
    )
    notes = []
    if effects.min() == effects.max():
        notes.append(f"all {effects.size} effects are identical")
    if not significant and sig.p_value <= sig.min_attainable_p:
        notes.append(
            f"p is already the smallest this test can give ({_p(sig.min_attainable_p)}); "
            "more held-out pairs, null samples or permutations are needed for it to survive correction"
        )
    return f"{head} — {details}" + "".join(f"; {n}" for n in notes)


def _check_min_effect(min_effect: float) -> float:
    if isinstance(min_effect, bool) or not isinstance(min_effect, numbers.Real):
        raise InvalidParameterError(f"min_effect must be a number >= 0, got {min_effect!r}")
    if not np.isfinite(min_effect):
        raise NonFiniteInputError(f"min_effect is {min_effect!r}; it must be a finite magnitude >= 0")
    if min_effect < 0:
        raise InvalidParameterError(
            f"min_effect must be >= 0 (a magnitude, as in Claim.min_effect; the sign comes from the direction), got {min_effect}"
        )
    return float(min_effect)


def _child_seeds(seed: int, k: int) -> list[int]:
    """Independent, reproducible seeds for the bootstrap and the permutation test."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(k)]


_CI_LABELS: dict[str, str] = {"bca": "BCa", "percentile": "percentile"}


def _pair(x: float, ref: float, digits: int = 3) -> tuple[str, str]:
    """Format a figure and the bar it is compared with, adding digits until they read differently."""
    for d in (digits, digits + 2, 8, 17):
        xs, rs = f"{x:.{d}g}", f"{ref:.{d}g}"
        if xs != rs:
            break
    return xs, rs


def _num(x: float) -> str:
    return f"{x:.3g}"


def _p(x: float) -> str:
    return f"{x:.2g}"

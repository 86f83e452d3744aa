"""Figures drawn from the ledger itself: verified effects with CIs, the run's course, time and spend.

Why from the ledger and not from the loop's memory: these are the numbers the report's tables
print, so a plot and its table can never disagree.
"""

from __future__ import annotations

import math

from orchestrator.ledger import LedgerEntry
from orchestrator.report.data import DECISION_ORDER, ClaimStat
from orchestrator.report.figures import NEUTRAL, PALETTE, _plain_text, new_figure, to_png

DECISION_COLOURS = {"keep": "#2e7d32", "discard": "#9e9e9e", "crash": "#c62828", "violation": "#6a1b9a",
                    "rejected": "#ef6c00", "failed": "#795548"}
MAX_FOREST_ROWS = 60


def forest_claims(claims: list[ClaimStat]) -> list[ClaimStat]:
    """The claims a forest plot shows: all kept ones, then the largest untested-out ones, in attempt order."""
    kept = [c for c in claims if c.kept]
    rest = sorted((c for c in claims if not c.kept), key=lambda c: -abs(c.effect) if math.isfinite(c.effect) else 0.0)
    chosen = kept + rest[: max(0, MAX_FOREST_ROWS - len(kept))]
    return sorted(chosen[:MAX_FOREST_ROWS], key=lambda c: (c.attempt, c.claim_index))


def forest(claims: list[ClaimStat]) -> bytes:
    """Effect and 95% CI per claim on held-out pairs; the grey band is ± the claim's noise floor."""
    rows = forest_claims(claims)
    with _plain_text():
        fig = new_figure(8.0, max(2.2, 0.9 + 0.34 * len(rows)))
        ax = fig.add_subplot()
        for y, c in enumerate(reversed(rows)):
            colour = DECISION_COLOURS["keep"] if c.kept else NEUTRAL
            if math.isfinite(c.noise_floor) and c.noise_floor > 0:
                ax.fill_betweenx([y - 0.3, y + 0.3], -c.noise_floor, c.noise_floor, color="#e8e8e8", lw=0)
            if math.isfinite(c.ci_low) and math.isfinite(c.ci_high):
                ax.plot([c.ci_low, c.ci_high], [y, y], color=colour, lw=2)
            if math.isfinite(c.effect):
                ax.plot([c.effect], [y], "o", color=colour, markersize=6)
        ax.axvline(0, color="black", lw=0.7)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([c.label[:40] + ("" if c.kept else " (not kept)") for c in reversed(rows)])
        ax.set_xlabel("verified effect on held-out pairs (95% CI; grey: ± noise floor)")
        ax.set_title("Claims as re-measured by the verifier", loc="left")
        ax.grid(axis="x", alpha=0.25)
        return to_png(fig)


def cumulative_decisions(entries: list[LedgerEntry]) -> dict[str, list[int]]:
    """Running count of each decision after each attempt (only decisions that occur)."""
    present = [d for d in DECISION_ORDER if any(e.decision == d for e in entries)]
    out: dict[str, list[int]] = {d: [] for d in present}
    for i, e in enumerate(entries):
        for d in present:
            prev = out[d][i - 1] if i else 0
            out[d].append(prev + int(e.decision == d))
    return out


def timeline(entries: list[LedgerEntry]) -> bytes:
    """How the run went: kept, discarded and crashed attempts accumulated over attempts."""
    counts = cumulative_decisions(entries)
    xs = [e.attempt for e in entries]
    with _plain_text():
        fig = new_figure(7.5, 3.2)
        ax = fig.add_subplot()
        if counts:
            ax.stackplot(xs, *counts.values(), labels=list(counts), step="post",
                         colors=[DECISION_COLOURS[d] for d in counts], alpha=0.85)
            ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.set_xlabel("attempt")
        ax.set_ylabel("attempts so far")
        ax.set_title("Outcome of each attempt, accumulated", loc="left")
        return to_png(fig)


def phase_seconds(entries: list[LedgerEntry]) -> dict[str, list[float]]:
    """Seconds per phase per attempt, from the ledger's durations (phases in order of first use)."""
    phases: list[str] = []
    for e in entries:
        phases.extend(p for p in e.durations_s if p not in phases)
    return {p: [float(e.durations_s.get(p, 0.0)) for e in entries] for p in phases}


def durations(entries: list[LedgerEntry]) -> bytes:
    """Where the time went: seconds per attempt stacked by phase."""
    per_phase = phase_seconds(entries)
    xs = [e.attempt for e in entries]
    with _plain_text():
        fig = new_figure(7.5, 3.2)
        ax = fig.add_subplot()
        bottom = [0.0] * len(xs)
        for i, (phase, secs) in enumerate(per_phase.items()):
            ax.bar(xs, secs, bottom=bottom, color=PALETTE[i % len(PALETTE)], label=phase, width=0.8)
            bottom = [b + s for b, s in zip(bottom, secs)]
        if per_phase:
            ax.legend(fontsize=7, frameon=False, ncols=min(4, len(per_phase)))
        ax.set_xlabel("attempt")
        ax.set_ylabel("seconds")
        ax.set_title("Time per attempt by phase", loc="left")
        return to_png(fig)


def cumulative_spend(entries: list[LedgerEntry]) -> tuple[list[float], list[int]]:
    dollars, tokens, d, t = [], [], 0.0, 0
    for e in entries:
        d, t = d + e.dollars, t + e.tokens
        dollars.append(d)
        tokens.append(t)
    return dollars, tokens


def spend(entries: list[LedgerEntry]) -> bytes:
    """Dollars (left axis) and tokens (right axis) spent, accumulated over attempts."""
    dollars, tokens = cumulative_spend(entries)
    xs = [e.attempt for e in entries]
    with _plain_text():
        fig = new_figure(7.5, 3.2)
        ax = fig.add_subplot()
        ax.plot(xs, dollars, color=PALETTE[0], marker="o", markersize=3, label="dollars")
        ax.set_ylabel("dollars", color=PALETTE[0])
        ax.set_xlabel("attempt")
        twin = ax.twinx()
        twin.plot(xs, tokens, color=PALETTE[1], marker="s", markersize=3, label="tokens")
        twin.set_ylabel("tokens", color=PALETTE[1])
        twin.spines["right"].set_visible(True)
        ax.set_title("Spend, accumulated", loc="left")
        return to_png(fig)

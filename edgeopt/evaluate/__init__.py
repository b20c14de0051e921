"""Judging measurements and variants: budgets and verdicts (gate), run-to-run comparison, output
fidelity, task metrics, robustness sets, and per-node quantization sensitivity."""

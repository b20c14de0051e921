"""Regression history: every run's rows in a results store, series per (model, profile, variant, runtime), change
points across commits, the ``history --check`` alarm and the static dashboard page (docs/history.md)."""

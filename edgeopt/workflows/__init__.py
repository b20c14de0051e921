"""Whole jobs built from the stages: ``run`` (pipeline), A/B comparison, tuning, sweeps and reruns."""

"""Issue 23's second hostile-input campaign as a table: 117 rows through the real CLI, the pytest plugin and the
device lab, each building its own files (``table.py``: the workspace and the registration; ``cases_*.py``: the
rows; ``tests/test_campaign2.py`` runs them with ``tests/hostile_runner.py``)."""

"""Rows of the second campaign: inputs (see tests/campaign2/table.py)."""

from __future__ import annotations

from tests.campaign2.table import Workspace2, case

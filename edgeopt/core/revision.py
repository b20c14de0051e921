"""The measured project's revision: git commit, branch and whether the work tree had changes.

CI systems check out a detached commit (branch ``HEAD``) and name the real one in their variables, so those are
read first (GitHub Actions, GitLab CI, Buildkite, Jenkins, Azure Pipelines, CircleCI); otherwise ``git`` is asked
in the working directory.  None outside a repository and without such variables: a run is still stored, without
a commit.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

# (commit variable, branch variables in order of preference): pull requests first where the CI names both
_CI_VARIABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GITHUB_SHA", ("GITHUB_HEAD_REF", "GITHUB_REF_NAME")),
    ("CI_COMMIT_SHA", ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "CI_COMMIT_REF_NAME")),
    ("BUILDKITE_COMMIT", ("BUILDKITE_BRANCH",)),
    ("BUILD_SOURCEVERSION", ("SYSTEM_PULLREQUEST_SOURCEBRANCH", "BUILD_SOURCEBRANCHNAME")),
    ("CIRCLE_SHA1", ("CIRCLE_BRANCH",)),
    ("GIT_COMMIT", ("GIT_BRANCH",)),
)


def project_revision(cwd: Path | None = None) -> dict[str, Any] | None:
    """``{"commit", "branch", "dirty", "source"}`` of the project measured from ``cwd`` (default: the current
    folder), or None when neither a CI variable nor git knows one."""
    for commit_variable, branch_variables in _CI_VARIABLES:
        commit = os.environ.get(commit_variable, "").strip()
        if commit:
            branch = next((value for name in branch_variables if (value := os.environ.get(name, "").strip())), None)
            return {"commit": commit, "branch": branch, "dirty": None, "source": commit_variable}
    head = git_output(cwd, "rev-parse", "HEAD")
    if head is None:
        return None
    branch = git_output(cwd, "rev-parse", "--abbrev-ref", "HEAD")
    status = git_output(cwd, "status", "--porcelain", "--untracked-files=no")
    return {"commit": head, "branch": None if branch in (None, "HEAD") else branch,
            "dirty": None if status is None else bool(status), "source": "git"}


def git_output(cwd: Path | None, *arguments: str) -> str | None:
    """What ``git ARGUMENTS`` prints in ``cwd``, stripped; None when git is missing, fails or takes over 5 s."""
    try:
        done = subprocess.run(["git", *arguments], cwd=cwd, capture_output=True, text=True, timeout=5,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None

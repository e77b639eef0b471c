"""The tags MLflow's fluent ``start_run`` gives a new run: who ran it, from what, and the git ones.

Loaded by ``start_run`` when it first makes a run: a process that starts no run never loads it
(nor ``_git.py``).
"""

from __future__ import annotations

import getpass
import os
import sys

from ._git import git_tags


def system_tags() -> dict[str, str]:
    """The tags MLflow's fluent start_run adds (mlflow.user, mlflow.source.name, mlflow.source.type,
    and the mlflow.source.git ones in a git work tree)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (a container without /etc/passwd entry)
        user = "unknown"
    source = sys.argv[0] if sys.argv and sys.argv[0] else "<console>"
    # MLflow's GitRunContext: the commit, branch and remote of the work tree the script is in.
    git = git_tags(sys.argv[0]) if sys.argv and sys.argv[0] else {}
    # A script path or user name that is not UTF-8 (lone surrogates from os.fsdecode) gets its bytes
    # escaped ("run-\\xff.py"): start_run refused, as a bad tag value, a tag the caller never gave.
    user, source = (os.fsencode(text).decode("utf-8", "backslashreplace") for text in (user, source))
    return {"mlflow.user": user, "mlflow.source.name": source, "mlflow.source.type": "LOCAL", **git}

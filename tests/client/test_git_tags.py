"""A run started from a script in a git work tree gets the git tags MLflow's start_run gives it.

Each case runs one script twice, in a fresh interpreter each: through trackd (a real daemon) and
through real MLflow (its own file store), and compares the ``mlflow.source.git.*`` tags MLflow
reads back from the two stores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

SCRIPT = """\
import sys
if sys.argv[1] == "trackd":
    import trackd as backend
else:
    import mlflow as backend
backend.set_tracking_uri(sys.argv[2])
with backend.start_run() as run:
    print(run.info.run_id)
"""
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


# Remotes as a hand-edited config has them; GitPython reads git's config syntax (key case, quotes,
# comments) and MLflow takes the first remote's url, or none if it has only a pushurl.
HAND_EDITED_REMOTES = {
    "hand-edited-config": '[Remote "origin"]\n\tURL = "https://user:secret-token@example.com/team/repo.git" ; moved\n',
    "first-remote-without-url": '[remote "origin"]\n\tpushurl = https://example.com/team/repo.git\n'
    '[remote "backup"]\n\turl = git@example.com:team/backup.git\n',
}


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, env={**os.environ, **GIT_ENV})


def _work_tree(tmp_path: Path, case: str) -> Path:
    """The folder holding train.py, set up as ``case`` says."""
    repo = tmp_path / "repo"
    repo.mkdir()
    if case != "not-a-repo":
        _git(repo, "init", "-q", "-b", "main")
    if case in ("not-a-repo", "no-commit"):
        return repo
    _git(repo, "remote", "add", "origin", "https://user:secret-token@example.com/team/repo.git")
    _git(repo, "remote", "add", "backup", "git@example.com:team/backup.git")
    (repo / ".gitignore").write_text("ignored/\n")
    _git(repo, "add", ".gitignore")
    _git(repo, "commit", "-q", "-m", "first")
    if case == "packed":
        _git(repo, "pack-refs", "--all")
    elif case == "detached":
        _git(repo, "checkout", "-q", "--detach")
    elif case == "worktree":
        _git(repo, "worktree", "add", "-q", "-b", "feature", str(tmp_path / "wt"))
        return tmp_path / "wt" / "src"
    elif case == "ignored":
        return repo / "ignored"
    elif case in HAND_EDITED_REMOTES:
        _git(repo, "remote", "remove", "origin")
        _git(repo, "remote", "remove", "backup")
        with (repo / ".git" / "config").open("a") as config:
            config.write(HAND_EDITED_REMOTES[case])
    elif case == "damaged-index":
        (repo / ".git" / "index").write_bytes(b"not an index")  # git check-ignore exits 128
    elif case == "another-owner":
        if os.geteuid() != 0:
            pytest.skip("making a repository another user owns takes root")
        (repo / "src").mkdir()
        for path in [repo, *repo.rglob("*")]:
            os.chown(path, 65534, 65534, follow_symlinks=False)  # nobody: git says "dubious ownership"
    return repo / "src"


def _git_tags(store: Path, run_id: str) -> dict[str, str]:
    tags = MlflowClient(str(store)).get_run(run_id).data.tags
    return {key: value for key, value in tags.items() if key.startswith("mlflow.source.git.")}


@pytest.mark.parametrize(
    "case", [
        "branch", "packed", "detached", "worktree", "ignored", "no-commit", "not-a-repo", "damaged-index", "another-owner",
        *HAND_EDITED_REMOTES,
    ],
)
def test_git_tags_are_the_ones_mlflow_gives_the_same_script(case: str, daemon: DaemonProcess, tmp_path: Path) -> None:
    # trackd gave none: the MLflow UI showed no commit for any run, where MLflow's showed one.
    # "damaged-index", "another-owner": git refuses the repository, and MLflow tags nothing; trackd
    # used to tag the run from the repository's files all the same. HAND_EDITED_REMOTES: trackd's
    # repoURL was another remote's, or the value with its quotes and comment.
    folder = _work_tree(tmp_path, case)
    folder.mkdir(exist_ok=True)
    script = folder / "train.py"
    script.write_text(SCRIPT)
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0")
    for name in ("MLFLOW_TRACKING_URI", "TRACKD_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        env.pop(name, None)
    tags = {}
    for backend in ("trackd", "mlflow"):
        store = tmp_path / f"mlruns-{backend}"
        result = subprocess.run(
            [sys.executable, str(script), backend, str(store)], env=env, cwd=folder, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        tags[backend] = _git_tags(store, result.stdout.split()[-1])
    assert tags["trackd"] == tags["mlflow"]
    expect_commit = case in ("branch", "packed", "detached", "worktree", *HAND_EDITED_REMOTES)
    assert ("mlflow.source.git.commit" in tags["trackd"]) is expect_commit  # the case tests what it says
    if expect_commit:
        url = None if case == "first-remote-without-url" else "https://example.com/team/repo.git"
        assert tags["trackd"].get("mlflow.source.git.repoURL") == url

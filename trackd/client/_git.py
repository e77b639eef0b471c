"""The git tags MLflow's fluent ``start_run`` adds when the script lives in a git work tree.

MLflow's ``GitRunContext`` tags each run with ``mlflow.source.git.commit``, ``.branch`` and
``.repoURL`` (the UI's "Git Commit" and the source link), through GitPython, whose import alone
would cost a short process more than all of trackd. The same facts are read here from the
repository's files: ``HEAD``, the ref it names (a loose file or a ``packed-refs`` line) and the
remotes in ``config``. Only MLflow's own test for a script in an ignored folder asks git itself.
"""

from __future__ import annotations

import functools
import os
import re

COMMIT_TAG = "mlflow.source.git.commit"
BRANCH_TAG = "mlflow.source.git.branch"
REPO_URL_TAG = "mlflow.source.git.repoURL"

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# Section and key names are case-insensitive in git's config; the value is read by _config_value.
_REMOTE_SECTION = re.compile(r'\s*\[remote\s+"(.*)"\s*\]', re.IGNORECASE)
_URL = re.compile(r"\s*url\s*=(.*)$", re.IGNORECASE)
_ESCAPES = {"n": "\n", "t": "\t", "b": "\b"}


@functools.lru_cache(maxsize=8)
def git_tags(main_file: str) -> dict[str, str]:
    """The git tags for a run of ``main_file`` (sys.argv[0]), as MLflow's GitRunContext gives them.

    None when the script is not in a work tree, the branch has no commit yet, the script's
    folder is ignored by git, git refuses the repository (another user's, a damaged index), or
    git is not installed (MLflow then cannot import GitPython).
    """
    folder = os.path.abspath(main_file)
    if os.path.isfile(folder):
        folder = os.path.dirname(folder)
    elif not os.path.isdir(folder):  # "-c", "<stdin>": GitPython's Repo(path) raises, no tags
        return {}
    found = _git_dirs(folder)
    if found is None:
        return {}
    git_dir, common_dir = found
    head = _read(os.path.join(git_dir, "HEAD"))
    branch = None
    if head is not None and head.startswith("ref: "):
        ref = head[len("ref: "):]
        branch = ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else None
        head = _resolve(ref, git_dir, common_dir)
    if head is None or not _SHA.fullmatch(head) or _ignored(folder):
        return {}
    tags = {COMMIT_TAG: head}
    if branch:
        tags[BRANCH_TAG] = branch
    url = _first_remote_url(common_dir)
    if url:
        tags[REPO_URL_TAG] = _without_credentials(url)
    return tags


def _git_dirs(folder: str) -> tuple[str, str] | None:
    """The repository's git dir and common dir (they differ in a linked worktree), searching up."""
    while True:
        dot_git = os.path.join(folder, ".git")
        git_dir: str | None = dot_git if os.path.isdir(dot_git) else None
        if git_dir is None and os.path.isfile(dot_git):
            pointer = _read(dot_git)  # a worktree's or submodule's "gitdir: <path>"
            if pointer is not None and pointer.startswith("gitdir: "):
                git_dir = os.path.normpath(os.path.join(folder, pointer[len("gitdir: "):]))
        if git_dir is not None:
            common = _read(os.path.join(git_dir, "commondir"))
            return git_dir, os.path.normpath(os.path.join(git_dir, common)) if common else git_dir
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _resolve(ref: str, git_dir: str, common_dir: str) -> str | None:
    for folder in (git_dir, common_dir):
        loose = _read(os.path.join(folder, *ref.split("/")))
        if loose is not None:
            return loose
    packed = _read(os.path.join(common_dir, "packed-refs")) or ""
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref:
            return sha
    return None


def _first_remote_url(common_dir: str) -> str | None:
    """The url of the first remote in ``config``, as GitPython's ``repo.remotes`` lists them.

    None if that remote has no url (only a pushurl): MLflow's ``next(remote.url for remote in
    repo.remotes)`` raises there and it gives no repoURL, not the next remote's.
    """
    urls: dict[str, str | None] = {}
    remote = None
    for line in (_read(os.path.join(common_dir, "config")) or "").splitlines():
        if line.lstrip().startswith("["):
            section = _REMOTE_SECTION.match(line)
            remote = section.group(1) if section is not None else None
            if remote is not None:
                urls.setdefault(remote, None)
        elif remote is not None and (match := _URL.match(line)) is not None:
            urls[remote] = _config_value(match.group(1))  # the last of several, as GitPython's remote.url
    return next(iter(urls.values()), None)


def _config_value(raw: str) -> str:
    """A value as git's config syntax reads it: quotes removed, escapes undone, and a ``;`` or
    ``#`` outside quotes starting a comment (GitPython reads ``url = "x" ; y`` as ``x``)."""
    value: list[str] = []
    quoted = escaped = False
    for char in raw:
        if escaped:
            value.append(_ESCAPES.get(char, char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char in ";#" and not quoted:
            break
        else:
            value.append(char)
    return "".join(value).strip()


def _without_credentials(url: str) -> str:
    # MLflow's _strip_credentials_from_url: the tag is shown to everyone who reads the store.
    from urllib.parse import urlsplit, urlunsplit  # only for a run in a work tree with a remote

    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment))


def _ignored(folder: str) -> bool:
    # MLflow's get_git_commit gives no commit for a script in a folder git ignores (a virtualenv
    # inside the project, as for `python -m pytest` run from .venv): `git check-ignore`, as
    # GitPython's repo.ignored() runs it. Without git on PATH MLflow cannot import GitPython.
    import subprocess  # only for a run in a work tree

    try:
        result = subprocess.run(
            ["git", "-C", folder, "check-ignore", "-q", folder],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return True
    # 1 is "not ignored". Any other failure counts as ignored: GitPython's repo.ignored() raises on
    # it, so MLflow's get_git_commit gives no commit and the run no git tags. Git refusing a repo
    # another user owns ("detected dubious ownership", safe.directory) or a damaged index exits
    # 128, and trackd tagged such runs where MLflow tags none.
    return result.returncode != 1


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as file:
            return file.read().decode("utf-8", "backslashreplace").strip()
    except OSError:
        return None

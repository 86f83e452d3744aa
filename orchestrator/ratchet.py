"""The ratchet: the findings branch moves only by one commit per kept, verified finding.

Why gitpython in-process (not the git CLI): a SIGKILL then takes the whole commit attempt down
with the process instead of leaving an orphaned git child that races the resume. Each finding
commit carries an ``Attempt: N`` trailer so resume can tell "committed" from "not yet".
"""

from __future__ import annotations

import re
from pathlib import Path

import git

from orchestrator.crashpoints import crash_point

BRANCH = "findings"
ACTOR = git.Actor("orchestrator", "orchestrator@localhost")
_TRAILER = re.compile(r"^Attempt: (\d+)$", re.MULTILINE)
# Files that are never part of a findings commit (state for resume, logs, the lock file).
EXCLUDES = ("/state.json", "/.state.json.tmp", "/state/", "/logs/", "/.lock", "/report.md", "/report.html", "/report_files/", "__pycache__/")


class RatchetError(RuntimeError):
    """The run's git repository is not in a state the ratchet can work with."""


class Ratchet:
    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            self.repo = git.Repo(root)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise RatchetError(f"{root} is not a git repository (was the run directory created by `run`?)") from exc

    @classmethod
    def init(cls, root: Path, paths: list[str], message: str) -> "Ratchet":
        """Create the repository on branch ``findings`` with ``paths`` (the contract) as its first commit."""
        repo = git.Repo.init(root, initial_branch=BRANCH)
        with repo.config_writer() as cfg:
            cfg.set_value("user", "name", ACTOR.name)
            cfg.set_value("user", "email", ACTOR.email)
        exclude = Path(repo.git_dir) / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("\n".join(EXCLUDES) + "\n")
        repo.index.add(paths)
        repo.index.commit(message, author=ACTOR, committer=ACTOR)
        return cls(root)

    def clear_stale_locks(self) -> list[str]:
        """Remove git lock files left by a killed process (call only while holding the run lock)."""
        git_dir = Path(self.repo.git_dir)
        removed = []
        for lock in [git_dir / "index.lock", git_dir / "HEAD.lock", *git_dir.glob("refs/heads/*.lock")]:
            if lock.exists():
                lock.unlink()
                removed.append(str(lock.relative_to(git_dir)))
        return removed

    def head_sha(self) -> str:
        return self.repo.commit(BRANCH).hexsha

    def findings(self) -> list[tuple[int, git.Commit]]:
        """(attempt, commit) for each finding commit on the branch, oldest first."""
        out = []
        for commit in self.repo.iter_commits(BRANCH):
            match = _TRAILER.search(str(commit.message))
            if match:
                out.append((int(match.group(1)), commit))
        return list(reversed(out))

    def commit_for(self, attempt: int) -> git.Commit | None:
        return next((c for a, c in self.findings() if a == attempt), None)

    def commit_finding(self, attempt: int, paths: list[str], title: str, body: str) -> str:
        """Commit ``paths`` as the finding of ``attempt``; idempotent (returns the existing commit)."""
        existing = self.commit_for(attempt)
        if existing is not None:
            return existing.hexsha
        if self.repo.active_branch.name != BRANCH:
            raise RatchetError(f"HEAD is on {self.repo.active_branch.name!r}, expected {BRANCH!r}; check out {BRANCH}")
        index = self.repo.index
        index.reset(commit=self.repo.head.commit)  # drop anything a killed commit left staged
        crash_point("commit-staging", attempt)
        index.add(paths)
        crash_point("commit-staged", attempt)
        message = f"{title}\n\n{body.rstrip()}\n\nAttempt: {attempt}\n"
        commit = index.commit(message, author=ACTOR, committer=ACTOR)
        return commit.hexsha

    def commits_touching(self, path: str) -> list[str]:
        return [c.hexsha for c in self.repo.iter_commits(BRANCH, paths=path)]

    def restore(self, path: str) -> None:
        """Put ``path`` back as committed on the branch (after an experiment tampered with it)."""
        self.repo.git.checkout(BRANCH, "--", path)

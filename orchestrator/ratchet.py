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
    def init(cls, root: Path, paths: list[str], message: str, extra_excludes: tuple[str, ...] = ()) -> "Ratchet":
        """Create the repository on branch ``findings`` with ``paths`` (the contract) as its first commit."""
        repo = git.Repo.init(root, initial_branch=BRANCH)
        with repo.config_writer() as cfg:
            cfg.set_value("user", "name", ACTOR.name)
            cfg.set_value("user", "email", ACTOR.email)
        exclude = Path(repo.git_dir) / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("\n".join((*EXCLUDES, *extra_excludes)) + "\n")
        crash_point("repo-initialised", 0)
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

    def branch_commits(self) -> list[git.Commit]:
        """The findings branch, newest first; RatchetError if it is missing or unreadable (read-only check)."""
        where = f"git -C {self.root}"
        try:
            names = [h.name for h in self.repo.heads]
        except (git.GitError, ValueError, OSError) as exc:
            raise RatchetError(f"{self.root}: the git repository cannot be read ({exc}); check it with `{where} fsck` "
                               "and restore the run directory from a backup") from None
        if BRANCH not in names:
            raise RatchetError(f"{self.root}: the git repository has no `{BRANCH}` branch, which holds the contract and "
                               "the kept findings; this is not a run directory the loop made, or its repository was rewritten")
        try:
            commits = list(self.repo.iter_commits(BRANCH))
            for commit in commits:
                commit.tree  # noqa: B018 - reads each commit object, so a missing object fails here, not later
        except (git.GitError, ValueError, OSError) as exc:
            detail = " ".join(str(getattr(exc, "stderr", "") or exc).split()).strip("'")
            raise RatchetError(f"{self.root}: the findings branch cannot be read ({detail}); the git repository is "
                               f"damaged: check it with `{where} fsck` and restore the run directory from a backup") from None
        return commits

    def check(self) -> list[tuple[int, git.Commit]]:
        """The findings of a branch the ratchet can extend, or RatchetError saying what to repair.

        Checked at every session start: HEAD on ``findings``, the history readable, no kept finding lost
        from it (per its reflog), the first commit the contract and every later one a finding (one
        ``Attempt: N`` trailer each, no merges, no duplicates).
        """
        where = f"git -C {self.root}"
        commits = self.branch_commits()
        try:
            head = None if self.repo.head.is_detached else self.repo.head.reference.name
        except (TypeError, ValueError, OSError) as exc:
            raise RatchetError(f"{self.root}: the git HEAD cannot be read ({exc}); run `{where} checkout {BRANCH}`") from None
        if head != BRANCH:
            raise RatchetError(f"{self.root}: git HEAD is {'detached' if head is None else f'on branch {head!r}'}; the loop "
                               f"commits findings on `{BRANCH}` only: run `{where} checkout {BRANCH}`, then resume")
        findings = self.findings(commits)
        lost = self._lost_finding({c.hexsha for c in commits}, {a for a, _ in findings})
        if lost is not None:
            raise RatchetError(
                f"{self.root}: the findings branch lost the commit of kept attempt {lost[0]} ({lost[1][:10]}): it was "
                f"reset or rewritten, but it only ever gains commits; put it back with `{where} reset --hard "
                f"{lost[1][:10]}`, then resume")
        seen: dict[int, str] = {}
        for commit in reversed(commits[:-1]):
            found = _TRAILER.findall(str(commit.message))
            if len(commit.parents) != 1 or len(found) != 1:
                raise RatchetError(
                    f"{self.root}: commit {commit.hexsha[:10]} ({commit.summary!r}) on `{BRANCH}` was not made by the loop "
                    f"(only one commit per kept finding moves it); move the branch back to the last finding with "
                    f"`{where} reset --hard <sha>` (see `{where} log --oneline {BRANCH} --`), then resume")
            attempt = int(found[0])
            if attempt in seen:
                raise RatchetError(f"{self.root}: attempt {attempt} has two findings commits ({seen[attempt][:10]} and "
                                   f"{commit.hexsha[:10]}); the branch was rewritten: restore it from `{where} reflog show {BRANCH} --`")
            seen[attempt] = commit.hexsha
        return findings

    def _lost_finding(self, on_branch: set[str], attempts: set[int]) -> tuple[int, str] | None:
        """(attempt, sha) of a finding commit the branch once pointed at and no longer holds, per its reflog."""
        try:
            entries = list(reversed(self.repo.heads[BRANCH].log()))
        except (OSError, ValueError):
            return None  # no reflog: nothing to compare with
        for sha in (s for e in entries for s in (e.newhexsha, e.oldhexsha)):  # old: a reset writes only its own entry
            if sha in on_branch or set(sha) == {"0"}:
                continue
            try:
                found = _TRAILER.findall(str(self.repo.commit(sha).message))
            except (git.GitError, ValueError, OSError):
                continue  # garbage-collected: cannot be restored anyway
            if len(found) == 1 and int(found[0]) not in attempts:
                return int(found[0]), sha
        return None

    def head_sha(self) -> str:
        return self.repo.commit(BRANCH).hexsha

    def findings(self, commits: list[git.Commit] | None = None) -> list[tuple[int, git.Commit]]:
        """(attempt, commit) for each finding commit on the branch, oldest first."""
        out = []
        for commit in commits if commits is not None else self.repo.iter_commits(BRANCH):
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

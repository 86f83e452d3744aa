"""`python -m tests`: run the suite in a process that has OpenBLAS preloaded (Linux).

LD_PRELOAD only takes effect at process start, so this re-executes pytest with it set.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    from engine.blas import blas_env

    env = dict(os.environ)
    env.update(blas_env(env))
    args = sys.argv[1:]
    os.execve(sys.executable, [sys.executable, "-m", "pytest", *args], env)


if __name__ == "__main__":
    main()

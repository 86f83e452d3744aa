"""`python -m tests.bench.peers`: the peer benchmark (same as `python -m tests.bench.bench_peers`)."""

from tests.bench.bench_peers import main

raise SystemExit(main())

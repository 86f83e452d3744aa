"""Sandbox: the immutable contract, the static guard, the isolated runner, the trusted harness and verifier.

Importing this package must never import mlx: the orchestrator process uses it.

Entry points for the orchestrator (all mlx-free at import time):
- sandbox.contract: create_contract, load_contract, verify_contract, contract_digest, restore_contract
- sandbox.guard: check_source / check_file -> list[GuardIssue], format_issues
- sandbox.runner: run_experiment(run_dir, experiment, number, ...) -> ExperimentOutcome
- sandbox.backend: ExperimentBackend protocol, LocalSubprocessBackend (submit / wait / cancel)
- sandbox.verifier: verify_claim(run_dir, claim, ...) -> VerificationResult (held-out split, nulls)
- sandbox.isolation: isolation_report() -> IsolationReport (layers active on this machine)
Child-side modules (harness, verify_entry, context, metric, childlib) run only inside the sandbox.
"""

"""The four research roles (planner, executor, analyst, reflector) and their typed outputs."""

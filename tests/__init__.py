"""The test suite as a package: a step defined in a test module must be importable as `tests.<...>` by the step
processes of pipelines/parallel_orchestrator.py (a dependency ships a top-level `tests` package that would otherwise win)."""

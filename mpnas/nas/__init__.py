"""Multi-path architecture search: weight-sharing supernet, per-domain RL controllers, the search loop."""

from mpnas.nas.search import SearchResult, run_search

__all__ = ["SearchResult", "run_search"]

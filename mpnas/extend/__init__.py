"""Add a domain to a trained merged model without touching the others (docs/add_domain.md)."""

from mpnas.extend.run import AddDomainResult, add_domain, check_inputs

__all__ = ["AddDomainResult", "add_domain", "check_inputs"]

"""LTC/NCP models, perception heads and policy files (torch only, no transport)."""

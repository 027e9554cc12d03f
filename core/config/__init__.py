"""Tenant files: the TenantConfig model, reading and validating YAML, resolving secrets.
May import the engine and the foundation (contract, model, strict, schedule, errors)."""

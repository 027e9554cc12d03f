"""The scoring engine: rules and their conditions, score cards, bands, grades and lifecycle decisions; pure, no I/O.
May import the foundation (model, strict, schedule, errors) only."""

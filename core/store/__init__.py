"""The SQLite checkpoint store: schema migrations, pulled records, scores and history, the outbox, run records.
May import the foundation (model, contract values, errors) only."""

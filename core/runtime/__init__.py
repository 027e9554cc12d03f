"""Running syncs: the pipeline, scoring passes and their workers, the daemon, status, metrics, health, logs.
May import config, store, engine and the foundation; never a connector (connectors come through the contract)."""

"""The vendor-neutral heart of leadpulse, in layers: cli -> runtime -> config, store -> engine -> the foundation
(errors, model, clock, strict, schedule, contract); it finds connectors through the contract's entry points only."""

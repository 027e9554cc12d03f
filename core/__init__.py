"""The vendor-neutral heart of leadpulse, in layers: cli -> runtime -> config, store -> engine -> the foundation
(errors, model, clock, strict, schedule, textfiles, contract); connectors come through the contract's entry points."""

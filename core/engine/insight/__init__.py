"""Insight: does the score predict conversion? The figures of a backtest (conversion by band, lift, AUC,
calibration), computed from scores however they were made; pure, no I/O, like the rest of the engine."""

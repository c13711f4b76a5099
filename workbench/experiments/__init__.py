"""Experiments: variants x seeds launched as one sweep, and statistics that say when a difference is real.

- `spec`: the sweep spec (TOML file or the command line's short form), its cells and validation;
- `plan`: which runs of an experiment exist, are missing or failed (pure);
- `stats`: bootstrap intervals, IQM, probability of improvement, verdicts, metric directions (pure);
- `view`: one read of an experiment from the registry, then its report and curves (pure after the read);
- `sweep`: launching and filling in through the launch layer, stopping.

The records live in the registry (`Registry.experiments`); nothing here imports torch or the UI.
"""

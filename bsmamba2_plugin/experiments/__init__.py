"""Experiments: recipes (one YAML per experiment) run stage by stage through the stock
msst and `bsmamba2` commands, resumable, each stage in its own process."""

"""Data tools: the synthetic multitrack renderer (`render`) and experiment recipes."""

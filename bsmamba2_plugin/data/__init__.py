"""Data tools: the synthetic multitrack renderer (`render`), the shipped configs and
recipes (`resources`), and the rule for files our commands write (`outputs`)."""

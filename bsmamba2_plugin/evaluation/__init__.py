"""Evaluation: metrics, the silence suite, `bsmamba2 evaluate` and its report, training
summaries and the bench. Separation itself is the `inference` layer's."""

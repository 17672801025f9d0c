"""The paper's training recipe: the loss (`losses`) and the data sampling (`augment`).

May import `network`; never msst (`msst_integration` plugs these into msst's trainer).
"""

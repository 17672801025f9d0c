"""The network: config schema, band split, the Mamba2 scan (SSD), Mamba2 layers, BSMamba2.

Imports only torch, the standard library and this subpackage (mamba_ssm and Triton only
lazily, inside the kernel backend). Nothing here knows about msst, training or data.
"""

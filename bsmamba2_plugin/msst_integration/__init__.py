"""Everything that touches msst: model type, entry points, patches, dataset, checkpoints.

The only subpackage that imports msst. Kept empty on purpose: the startup hook
(`hook`, run from a .pth file at every Python start) imports this package.
"""

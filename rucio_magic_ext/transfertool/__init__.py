"""A single-host Rucio transfertool that copies through rucio_magic_ext.storage.

Kept free of imports: the copier process starts from this package and must start fast.
"""

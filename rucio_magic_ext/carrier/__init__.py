"""Carrier batches: temporary datasets that pin new files at the source until their copies are verified."""

"""Rucio extension for the MAGIC gamma-ray telescopes."""

__version__ = "0.1.0"

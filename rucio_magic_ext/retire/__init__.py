"""Retiring a scope: ``plan`` decides from a snapshot (pure), ``catalogue`` reads and changes Rucio through its
core API, ``command`` is ``rucio-magic scope retire``."""

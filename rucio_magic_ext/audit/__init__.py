"""``rucio-magic audit RSE``: every byte of an RSE accounted for, by its storage, Rucio and the ledger.

``classes`` says how the three views differ (pure), ``views`` reads them, ``output`` writes the summary and
the lists in the format of Rucio's consistency tools, ``fix`` acts on request, ``command`` ties them together.
"""

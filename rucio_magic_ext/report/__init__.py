"""``rucio-magic report``: the observatory flow over a time range, from the ledger, as a plot and a per-night table.

``timeline`` and ``nights`` are pure; ``query`` reads the ledger, ``plot`` draws with matplotlib (the ``report``
extra), ``write`` puts both into files, and ``command`` is the subcommand.
"""

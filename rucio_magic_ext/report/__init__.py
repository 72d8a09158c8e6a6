"""``rucio-magic report``: ``timeline`` and ``nights`` are pure; ``query`` reads the ledger, ``plot`` draws with
matplotlib (the ``report`` extra), ``write`` puts both into files, and ``command`` is the subcommand."""

"""Carrier batches, shared by both daemons: what a carrier is (``model``), the ledger's record of them
(``book``) and their whole life in Rucio and the ledger (``life``). The scanner fills and closes them;
``rucio-magic-carrier`` (``release/``) verifies their copies and releases them."""

"""``rucio-magic-carrier``: verify every copy of a carrier's files, then release the carrier's source copies."""

"""rucio-magic-scanner: brings every new file of the observatory's RSE into Rucio, organised and protected."""

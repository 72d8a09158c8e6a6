"""DL3 (GADF) files: what their headers say, finding them by it in Rucio, and gammapy data stores of them."""

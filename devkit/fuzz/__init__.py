"""Random architectures and the fuzz case that prunes them (tests/fuzz runs a few, tools/soak many)."""

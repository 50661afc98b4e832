"""A package, so these test modules do not clash with same-named ones in tests/cogs (rootdir import mode)."""

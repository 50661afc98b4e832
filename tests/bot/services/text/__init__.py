"""A package, so same-named test modules of the other kinds do not clash (rootdir import mode)."""

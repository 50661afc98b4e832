"""/imagine, the ``image`` kind: ``request`` (options → the Horde request), ``source`` (uploaded
images), ``rerun`` (Rerun, Same seed, Edit), ``render`` (what its message says), ``job`` (the
kind the jobs engine runs), ``listener`` (its message kept current), ``reactions``."""

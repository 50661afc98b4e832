"""/write, the ``text`` kind: ``request`` (options → the Horde request, Continue), ``render`` (what
its message says), ``job`` (the kind the jobs engine runs), ``listener`` (its message kept current)."""

"""/alchemy (and the image menus, /imagine's Upscale), the ``alchemy`` kind: ``request`` (an operation
on an image → the Horde request), ``render`` (what its message says), ``job`` (the kind the jobs
engine runs), ``listener`` (its message kept current)."""

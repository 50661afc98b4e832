"""Server settings (``/config``): each declared once, typed, resolved per server, cached, audited.

``registry`` declares every setting (``ServerSettings``) and ``parsers`` reads and writes their
values as text; ``config`` resolves a server's :class:`GuildConfig` from the ``config.toml`` defaults
and what is stored; ``service`` is :class:`GuildSettingsService` (the cache, ``set``/``reset``,
``show``, ``audit``); ``sponsor`` keeps a server's sponsor key; ``patterns`` matches admins'
blocked patterns in linear time. Import from the module that holds a name.
"""

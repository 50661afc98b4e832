"""The clients, one module per kind; `bot.horde` is where they are imported from."""

"""Implementation of bot.horde.clients; import from there."""

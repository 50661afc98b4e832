"""The generation jobs engine; import its public names from :mod:`bot.services.jobs`."""

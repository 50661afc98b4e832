"""Discord UI: slash commands, modals and views. Thin; the work happens in ``bot`` services."""

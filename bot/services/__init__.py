"""Business logic, tested without Discord: cogs call these services and render what they return."""

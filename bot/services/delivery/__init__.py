"""A job's message on Discord, shared by every kind: ``service`` (:class:`Delivery`, one per bot:
opening a job's message, retries and deadlines), ``targets`` (where the message is: a channel
message or a private reply), ``budget`` (how often it may be edited), ``listener`` (the listener
text and alchemy share), ``render`` (what every kind's message shares) and ``limits`` (Discord's
size limits)."""

"""Zulip's event queue API for presence: ``POST register``, ``GET events`` and ``DELETE events``.

Each presence event is stored once per realm, in the realm's log; a queue is a small record with
a cursor into that log (docs/events.md). The backends keep logs and queues in this process or in
Redis.
"""

"""Signals of django-presence. Declarations only; they are sent from actions.py, always after
the writing transaction commits (``transaction.on_commit``), with keyword arguments only.
docs/signals.md documents each one."""

from __future__ import annotations

from django.dispatch import Signal

# Sent when Zulip would send a ``presence`` event: the user's first presence row was created,
# the user came online (active after more than the came-online threshold), or the update was
# forced (invisible mode toggled). Not sent for ordinary refreshes, nor (unless forced) when the
# realm has presence disabled; sent whatever the realm's size (PRESENCE_USER_LIMIT_FOR_EVENTS
# applies to the event queues only).
#
# sender:           UserPresence
# user:             the host's user instance whose presence changed
# member:           their RealmMember
# realm:            the Realm
# presence:         the modern entry, {"active_timestamp": int, "idle_timestamp": int}
# last_update_id:   the row's last_update_id after the write (int), or None when a forced
#                   update found nothing to write
# server_timestamp: when the change was made, float UNIX seconds
# forced:           True when sent because the update was forced (invisible-mode toggle)
presence_changed = Signal()

# Sent when a member turns invisible mode on or off (RealmMember.presence_enabled changes).
#
# sender:           RealmMember
# user:             the host's user instance
# member:           their RealmMember (already saved with the new value)
# realm:            the Realm
# presence_enabled: the new value (False means invisible)
presence_enabled_changed = Signal()

# Sent for every change of a member's status as the reads derive it (status.presence_status:
# "active", "idle" or "offline"), the changes a report or invisible mode makes and those time
# alone makes (the last active report or the last connection ageing past the offline
# threshold), once each whatever the number of server processes (timers.py sweeps for the
# latter within a second or so).
#
# sender:      UserPresence
# user:        the host's user instance
# member:      their RealmMember
# realm:       the Realm
# old_status:  the status before, a str
# new_status:  the status after, a str
# at:          the moment the status changed, an aware datetime
# late:        True when sent more than 2 s after ``at`` (no sweeper ran then, e.g. the server
#              was down)
presence_status_changed = Signal()

# Sent for every change of a member's status (text, emoji, end time, and ``away``, the legacy
# alias of invisible mode, when a status write passes it): each POST users/me/status and POST
# users/<user_id>/status, each status change made in the admin or by code through the actions,
# and the end of a status at its scheduled end time (once, whatever the number of server
# processes; the timers' sweeper sends it within a second or so of that time).
#
# sender:      UserStatus
# user:        the host's user instance whose status changed
# member:      their RealmMember
# realm:       the Realm
# status:      the status now, as its owner reads it (GET users/<user_id>/status): a dict with
#              away, status_text, emoji_name, emoji_code, reaction_type and
#              scheduled_end_time (int UNIX seconds), each only when set
# changed:     the fields of the owner's user_status event (those the change passed, and
#              scheduled_end_time, int or None, when the end time moved); everyone else's event
#              has the same fields but scheduled_end_time, and none is sent to them when
#              nothing else is left
# acting_user: the host's user instance who made the change (the member, or an
#              administrator), or None (the status ended at its end time, or code changed it
#              without naming anyone)
# ended:       True when the change is the status ending at its scheduled end time
# late:        True when a status ended more than 2 s after its end time (no sweeper ran then,
#              e.g. the server was down); always False for other changes
user_status_changed = Signal()

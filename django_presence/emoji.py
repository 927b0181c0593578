"""Status emoji, resolved and checked as Zulip does (zerver/lib/emoji.py), with its messages.

Three kinds (reaction types):

- ``unicode_emoji``: Zulip's names (canonical names and aliases) for Unicode emoji. The table is
  Zulip's own EMOJI_NAME_MAPS, as the ``zulip-emoji-mapping`` package carries it; the code is
  the emoji's code points in lowercase hex, at least 4 digits each, joined by ``-``, without
  the variation selector U+FE0F (``car`` is ``1f697``).
- ``realm_emoji``: the realm's custom emoji (models.RealmEmoji); the code is its id.
- ``zulip_extra_emoji``: the one emoji ``zulip``, code ``zulip``.
"""

from __future__ import annotations

from functools import cache

from zulip_emoji_mapping.emoji_names import EMOJI_NAME_MAPS

from .models import Realm
from .queries import get_active_realm_emoji, get_realm_emoji_by_code
from .user_status import REALM_EMOJI, UNICODE_EMOJI, ZULIP_EXTRA_EMOJI, Emoji

ZULIP_EMOJI_NAME = "zulip"


class EmojiError(ValueError):
    """Why an emoji is refused; the message is Zulip's."""


@cache
def name_to_codepoint() -> dict[str, str]:
    """Every name Zulip knows a Unicode emoji by (canonical names and aliases) -> its code."""
    table: dict[str, str] = {}
    for code, names in EMOJI_NAME_MAPS.items():
        table[names["canonical_name"]] = code
        for alias in names["aliases"]:
            table[alias] = code
    return table


@cache
def codepoint_to_name() -> dict[str, str]:
    """Every Unicode emoji code Zulip knows -> its canonical name."""
    return {code: names["canonical_name"] for code, names in EMOJI_NAME_MAPS.items()}


def resolve_emoji(realm: Realm, name: str) -> Emoji:
    """The emoji a name means in ``realm``, first match wins: an active custom emoji of the
    realm (it shadows a Unicode emoji of the same name), ``zulip``, a Unicode emoji name."""
    custom = get_active_realm_emoji(realm, name)
    if custom is not None:
        return Emoji(name, str(custom.pk), REALM_EMOJI)
    if name == ZULIP_EMOJI_NAME:
        return Emoji(name, ZULIP_EMOJI_NAME, ZULIP_EXTRA_EMOJI)
    code = name_to_codepoint().get(name)
    if code is None:
        raise EmojiError(f"Emoji '{name}' does not exist")
    return Emoji(name, code, UNICODE_EMOJI)


def check_emoji(realm: Realm, emoji: Emoji) -> None:
    """Zulip's check of a name, code and reaction type sent together (EmojiError)."""
    if emoji.reaction_type == REALM_EMOJI:
        # Deactivated emoji too: their error is their own.
        custom = get_realm_emoji_by_code(realm, emoji.code)
        if custom is None:
            raise EmojiError("Invalid custom emoji.")
        if custom.name != emoji.name:
            raise EmojiError("Invalid custom emoji name.")
        if custom.deactivated:
            raise EmojiError("This custom emoji has been deactivated.")
    elif emoji.reaction_type == ZULIP_EXTRA_EMOJI:
        if emoji.code != ZULIP_EMOJI_NAME:
            raise EmojiError("Invalid emoji code.")
        if emoji.name != emoji.code:
            raise EmojiError("Invalid emoji name.")
    elif emoji.reaction_type == UNICODE_EMOJI:
        if emoji.code not in codepoint_to_name():
            raise EmojiError("Invalid emoji code.")
        if name_to_codepoint().get(emoji.name) != emoji.code:
            raise EmojiError("Invalid emoji name.")
    else:
        raise EmojiError("Invalid emoji type.")


def unicode_character(code: str) -> str:
    """The Unicode emoji of a code (``1f697`` -> the car), for pages that show statuses."""
    return "".join(chr(int(part, 16)) for part in code.split("-"))

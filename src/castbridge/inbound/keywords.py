"""Which replies opt a number out of a location's SMS, or back in (CTIA-style whole-message
keywords, with per-country additions)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from castbridge.config import Settings

OPT_OUT = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
OPT_IN = ("START", "UNSTOP")
# Built-in additions by the country a gateway sends to. Angola: Portuguese.
LOCALE_OPT_OUT = {"AO": ("PARAR", "SAIR", "CANCELAR")}
LOCALE_OPT_IN = {"AO": ("INICIAR",)}

_EDGES = re.compile(r"^[\s\W_]+|[\s\W_]+$")
_SPACES = re.compile(r"\s+")

Intent = Literal["optout", "optin"]


@dataclass(frozen=True, slots=True)
class Match:
    intent: Intent
    keyword: str


def _fold(text: str) -> str:
    """Upper case, accents removed, surrounding punctuation and spaces dropped: "Stop." and
    " stop!" are STOP; "please stop texting me" is not (only the whole reply counts, as
    carriers do, so a conversation mentioning the word is never an opt-out)."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACES.sub(" ", _EDGES.sub("", plain)).upper()


def _configured(value: str, country: str) -> set[str]:
    words: set[str] = set()
    for entry in value.split(","):
        entry = entry.strip()
        if not entry:
            continue
        scope, _, word = entry.rpartition(":")
        if scope and scope.strip().upper() != country.upper():
            continue
        folded = _fold(word)
        if folded:
            words.add(folded)
    return words


class Keywords:
    """The keyword sets in force for accounts of one country."""

    def __init__(self, settings: Settings, country: str) -> None:
        country = country.upper()
        self.opt_out = {*OPT_OUT, *LOCALE_OPT_OUT.get(country, ())}
        self.opt_out |= _configured(settings.optout_keywords, country)
        self.opt_in = {*OPT_IN, *LOCALE_OPT_IN.get(country, ())}
        self.opt_in |= _configured(settings.optin_keywords, country)

    def match(self, text: str) -> Match | None:
        folded = _fold(text)
        if folded in self.opt_out:
            return Match("optout", folded)
        if folded in self.opt_in:
            return Match("optin", folded)
        return None

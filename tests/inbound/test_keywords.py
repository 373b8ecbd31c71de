"""Opt-out and opt-in keywords: whole-reply matching, folding, locales and configured words."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from castbridge.config import Settings
from castbridge.inbound.keywords import OPT_OUT, Keywords

FULLWIDTH_STOP = "\uff33\uff34\uff2f\uff30"


def intent(keywords: Keywords, reply: str) -> str | None:
    match = keywords.match(reply)
    return None if match is None else match.intent


@pytest.mark.parametrize(
    "reply",
    ["STOP", "stop", " Stop. ", "STOP!!", "stopall", "Unsubscribe", "quit\n", FULLWIDTH_STOP],
)
def test_opt_out_words_match_however_they_are_typed(settings: Settings, reply: str) -> None:
    assert intent(Keywords(settings, "PH"), reply) == "optout"


@pytest.mark.parametrize("reply", ["START", "unstop", "Start!"])
def test_opt_in_words_match(settings: Settings, reply: str) -> None:
    assert intent(Keywords(settings, "AU"), reply) == "optin"


@pytest.mark.parametrize(
    "reply",
    ["please stop texting me", "don't stop", "STOP STOP", "stopped", "the end is near", "", "  "],
)
def test_a_conversation_mentioning_the_word_is_not_an_opt_out(
    settings: Settings, reply: str
) -> None:
    assert intent(Keywords(settings, "PH"), reply) is None


def test_portuguese_words_apply_to_angola_only(settings: Settings) -> None:
    angola = Keywords(settings, "AO")
    assert intent(angola, "Parar") == "optout"
    assert intent(angola, "cancelár") == "optout"  # accents folded
    assert intent(angola, "Iniciar") == "optin"
    assert intent(Keywords(settings, "PH"), "PARAR") is None


def test_configured_words_with_and_without_country(settings: Settings) -> None:
    configured = settings.model_copy(
        update={"optout_keywords": "ALTO, UG:SIMAMISHA ,", "optin_keywords": "resume"}
    )
    uganda, australia = Keywords(configured, "UG"), Keywords(configured, "AU")
    assert intent(uganda, "simamisha") == "optout"
    assert intent(australia, "simamisha") is None
    assert intent(australia, "alto") == "optout"
    assert intent(australia, "Resume") == "optin"
    assert intent(australia, "STOP") == "optout"  # built-ins stay


@given(
    word=st.sampled_from(OPT_OUT),
    other=st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=12),
)
def test_a_keyword_next_to_another_word_never_opts_out(word: str, other: str) -> None:
    keywords = Keywords(Settings(_env_file=None, secret_keys=None), "PH")  # type: ignore[call-arg]
    assert keywords.match(f"{word} {other}") is None
    assert keywords.match(f"{other} {word}") is None

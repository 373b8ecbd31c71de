"""Phone numbers: normalise to E.164 for SMS, and format E.164 for a gateway (libphonenumber)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat, PhoneNumberType

# Longer input is not a phone number; refusing it early keeps junk out of the reasons we show.
MAX_INPUT_CHARS = 64

SMS_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})

# How a rejected number's type reads to a HighLevel user ("... is a landline").
_TYPE_PHRASES = {
    PhoneNumberType.FIXED_LINE: "a landline",
    PhoneNumberType.TOLL_FREE: "a toll-free number",
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
    PhoneNumberType.VOIP: "a VoIP number",
    PhoneNumberType.PERSONAL_NUMBER: "a personal (forwarding) number",
    PhoneNumberType.PAGER: "a pager number",
    PhoneNumberType.UAN: "a company switchboard number",
    PhoneNumberType.VOICEMAIL: "a voicemail number",
}

# Adjectives for the countries our gateways send to; other regions fall back to the bare code.
_COUNTRY_ADJECTIVES = {
    "PH": "Philippine",
    "AU": "Australian",
    "AO": "Angolan",
    "UG": "Ugandan",
    "KE": "Kenyan",
}


class InvalidNumber(ValueError):
    """A number we cannot send an SMS to; `reason` says why in words a HighLevel user follows."""

    def __init__(self, raw: str, reason: str) -> None:
        self.raw = raw
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class NumberInfo:
    """A valid number in the forms people and gateways use."""

    e164: str
    national: str  # as written in its own country, e.g. "0917 123 4567"
    international: str  # e.g. "+63 917 123 4567"
    type: str  # libphonenumber's type name, e.g. "MOBILE"
    region: str | None  # ISO region, e.g. "PH"


def normalize(raw: str, default_region: str) -> str:
    """Return `raw` as E.164 (`+639171234567`), or raise `InvalidNumber`.

    `default_region` (an ISO code such as "PH") says how to read a number written without `+`
    and a country code; a number with `+` keeps its own country. The number must be valid (not
    just possible) and able to receive SMS: mobile, or fixed-line-or-mobile where a country
    does not tell them apart.
    """
    text = raw.strip()
    if not text:
        raise InvalidNumber(raw, "the phone number is empty")
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidNumber(raw, f"{text[:20]}… is too long to be a phone number")
    region = default_region.strip().upper()
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise InvalidNumber(raw, _parse_reason(text, region, exc)) from None
    if not phonenumbers.is_valid_number(number):
        label = _country_label(number, region)
        raise InvalidNumber(raw, f"{text} is not a valid {label} number")
    number_type = phonenumbers.number_type(number)
    if number_type not in SMS_TYPES:
        shown = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
        kind = _TYPE_PHRASES.get(number_type, "not a mobile number")
        raise InvalidNumber(raw, f"{shown} is {kind}; SMS needs a mobile number")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def format_for_gateway(e164: str, country: str, style: Literal["e164", "national"]) -> str:
    """Format an E.164 number the way a gateway sending only to `country` wants it.

    `style="national"` gives digits as dialled inside the country (Cast: `09171234567`);
    `style="e164"` gives `+639171234567`. Raises `InvalidNumber` when the number is not from
    `country`, because the gateway would misroute or refuse it.
    """
    country = country.upper()
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        raise InvalidNumber(
            e164, f"{e164} is not in international form (+ and the country code)"
        ) from None
    # Check the country first: format_number_for_mobile_dialing formats a foreign number "as
    # dialled from" `country`, which silently yields an international string (sms-text.md §5.4).
    if phonenumbers.region_code_for_number(number) != country:
        adjective = _COUNTRY_ADJECTIVES.get(country)
        label = f"{adjective} ({country})" if adjective else country
        article = "an" if label[0] in "AEIO" else "a"  # "a Ugandan", "an Angolan"
        raise InvalidNumber(
            e164, f"{e164} is not {article} {label} number; this gateway only sends to {country}"
        )
    if style == "e164":
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if style == "national":
        return phonenumbers.format_number_for_mobile_dialing(number, country, with_formatting=False)
    raise ValueError(f"unknown number style {style!r}; expected 'e164' or 'national'")


def describe(e164: str) -> NumberInfo:
    """Describe a number already in E.164 (from `normalize`); raises `InvalidNumber` if not."""
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        raise InvalidNumber(
            e164, f"{e164} is not in international form (+ and the country code)"
        ) from None
    return NumberInfo(
        e164=phonenumbers.format_number(number, PhoneNumberFormat.E164),
        national=phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL),
        international=phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL),
        type=PhoneNumberType.to_string(phonenumbers.number_type(number)),
        region=phonenumbers.region_code_for_number(number),
    )


def _parse_reason(text: str, region: str, exc: NumberParseException) -> str:
    kind = exc.error_type
    if kind == NumberParseException.INVALID_COUNTRY_CODE:
        if text.startswith("+"):
            return f"{text} starts with an unknown country code"
        if region not in phonenumbers.SUPPORTED_REGIONS:
            return (
                f"{text} has no country code and {region or 'no region'} is not a known region; "
                "write it with + and the country code"
            )
        return f"{text} has no valid country code; write it with + and the country code"
    if kind in (NumberParseException.TOO_SHORT_NSN, NumberParseException.TOO_SHORT_AFTER_IDD):
        return f"{text} is too short to be a phone number"
    if kind == NumberParseException.TOO_LONG:
        return f"{text} is too long to be a phone number"
    return f"{text} is not a phone number"


def _country_label(number: PhoneNumber, default_region: str) -> str:
    """The region an invalid number was read as, for "is not a valid PH number"."""
    found = phonenumbers.region_code_for_number(number)
    if found is not None:
        return found
    # An invalid number may match no region of its country code (+61 covers AU, CC and CX).
    code = number.country_code or 0  # always set by parse(); the stubs allow None
    if code == phonenumbers.country_code_for_region(default_region):
        return default_region
    regions = phonenumbers.region_codes_for_country_code(code)
    return regions[0] if len(regions) == 1 else f"+{code}"

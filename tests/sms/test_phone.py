"""Tests for phone-number normalisation to E.164 and per-gateway formatting (sms-text.md §5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from castbridge.sms.phone import InvalidNumber, describe, format_for_gateway, normalize

# sms-text.md §5.2 and §5.3: inputs that are valid SMS numbers, with their region and E.164.
VALID = [
    ("+63 917 123 4567", "PH", "+639171234567"),
    ("0917-123-4567", "PH", "+639171234567"),
    ("(0917) 123 4567", "PH", "+639171234567"),
    ("09171234567", "PH", "+639171234567"),
    ("639171234567", "PH", "+639171234567"),
    ("9171234567", "PH", "+639171234567"),
    ("+639171234567", "PH", "+639171234567"),
    ("08131234567", "PH", "+638131234567"),  # Smart 813: PH mobiles are not only 09...
    ("08951234567", "PH", "+638951234567"),  # DITO 895-898
    ("0412 345 678", "AU", "+61412345678"),
    ("61412345678", "AU", "+61412345678"),
    ("412345678", "AU", "+61412345678"),
    ("+61400000000", "AU", "+61400000000"),
    ("+244923000000", "AO", "+244923000000"),
    ("923000000", "AO", "+244923000000"),
    ("244923000000", "AO", "+244923000000"),
    ("0712345678", "KE", "+254712345678"),
    ("254712345678", "KE", "+254712345678"),
    ("712345678", "KE", "+254712345678"),
    ("0110123456", "KE", "+254110123456"),
    ("0702913454", "UG", "+256702913454"),
    ("0776913451", "UG", "+256776913451"),
    ("0712345678", "UG", "+256712345678"),  # the same string is Kenyan under KE
]

# Rows that must be rejected, with a fragment the user-facing reason must contain.
INVALID = [
    ("09401234567", "PH", "09401234567 is not a valid PH number"),  # unallocated 0940 block
    ("+63917123456", "PH", "is not a valid PH number"),  # 9-digit NSN: possible, not valid
    ("+6391712345678", "PH", "is not a valid PH number"),  # 11-digit NSN
    ("639171234567", "", "has no country code"),  # no + and no region
    ("639171234567", "AU", "639171234567 is not a valid AU number"),  # read as +61639171234567
    ("0923456789", "AO", "0923456789 is not a valid AO number"),  # Angola has no trunk prefix
]

# Valid numbers that cannot receive SMS.
LANDLINES = [
    ("(02) 8123 4567", "PH", "+63 2 8123 4567 is a landline; SMS needs a mobile number"),
    ("+61 2 9876 5432", "AU", "+61 2 9876 5432 is a landline; SMS needs a mobile number"),
]


@pytest.mark.parametrize(("raw", "region", "e164"), VALID)
def test_normalize_valid(raw: str, region: str, e164: str) -> None:
    """Every valid mobile row of §5.2/§5.3 normalises to the documented E.164."""
    assert normalize(raw, region) == e164


@pytest.mark.parametrize(("raw", "region", "reason"), INVALID)
def test_normalize_invalid(raw: str, region: str, reason: str) -> None:
    """Invalid rows raise InvalidNumber with the raw input and a reason naming the problem."""
    with pytest.raises(InvalidNumber) as info:
        normalize(raw, region)
    assert reason in info.value.reason
    assert info.value.raw == raw
    assert str(info.value) == info.value.reason


@pytest.mark.parametrize(("raw", "region", "reason"), LANDLINES)
def test_normalize_rejects_landlines(raw: str, region: str, reason: str) -> None:
    """A valid fixed-line number is refused for SMS, shown in international form."""
    with pytest.raises(InvalidNumber) as info:
        normalize(raw, region)
    assert info.value.reason == reason


def test_same_national_string_depends_on_region() -> None:
    """0712345678 is Kenyan under KE and Ugandan under UG: the region decides, never a guess."""
    assert normalize("0712345678", "KE") == "+254712345678"
    assert normalize("0712345678", "UG") == "+256712345678"


def test_international_input_ignores_region() -> None:
    """A number written with + keeps its own country whatever the default region."""
    assert normalize("+61412345678", "PH") == "+61412345678"
    assert normalize("+639171234567", "UG") == "+639171234567"


def test_normalize_strips_whitespace_and_uppercases_region() -> None:
    """Surrounding whitespace and a lower-case region code are tolerated."""
    assert normalize("  0917 123 4567\n", "ph") == "+639171234567"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "the phone number is empty"),
        ("   \t", "the phone number is empty"),
        ("9" * 65, "is too long to be a phone number"),
        ("hello", "hello is not a phone number"),
        ("+", "is not a phone number"),
        ("+999 1234567", "+999 1234567 starts with an unknown country code"),
    ],
)
def test_normalize_rejects_junk(raw: str, reason: str) -> None:
    """Empty, absurdly long and non-numeric input is refused with InvalidNumber."""
    with pytest.raises(InvalidNumber) as info:
        normalize(raw, "PH")
    assert reason in info.value.reason


def test_normalize_unknown_region() -> None:
    """A national number with an unknown default region says the region is the problem."""
    with pytest.raises(InvalidNumber) as info:
        normalize("09171234567", "XX")
    assert "XX is not a known region" in info.value.reason


def test_too_long_reason_does_not_echo_the_input() -> None:
    """A huge input is cut short in the reason so logs and HighLevel messages stay small."""
    with pytest.raises(InvalidNumber) as info:
        normalize("1" * 10_000, "PH")
    assert len(info.value.reason) < 80


# sms-text.md §5.4: (E.164, gateway country, style, what the gateway is sent).
GATEWAY_FORMATS = [
    pytest.param("+639171234567", "PH", "national", "09171234567", id="cast"),
    pytest.param("+638951234567", "PH", "national", "08951234567", id="cast-dito"),
    pytest.param("+244923000000", "AO", "e164", "+244923000000", id="castbrick"),
    pytest.param("+61412345678", "AU", "e164", "+61412345678", id="cellcast"),
    pytest.param("+256702913454", "UG", "national", "0702913454", id="ugsms"),
]


@pytest.mark.parametrize(("e164", "country", "style", "expected"), GATEWAY_FORMATS)
def test_format_for_gateway(e164: str, country: str, style: str, expected: str) -> None:
    """Each gateway gets the number in the form §5.4 documents."""
    assert format_for_gateway(e164, country, style) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("style", ["national", "e164"])
def test_format_for_gateway_rejects_other_countries(style: str) -> None:
    """A number from another country is refused, in either style, with a readable reason."""
    with pytest.raises(InvalidNumber) as info:
        format_for_gateway("+61412345678", "PH", style)  # type: ignore[arg-type]
    assert info.value.reason == (
        "+61412345678 is not a Philippine (PH) number; this gateway only sends to PH"
    )


def test_format_for_gateway_pitfall_foreign_number_dialled_from_country() -> None:
    """A UG number is not quietly sent "as dialled from KE" (+256...) to a Kenyan gateway."""
    with pytest.raises(InvalidNumber, match="not a Kenyan \\(KE\\) number"):
        format_for_gateway("+256702913454", "KE", "national")


def test_format_for_gateway_unknown_country_uses_code() -> None:
    """For a country without a known adjective the reason uses the bare region code."""
    with pytest.raises(InvalidNumber) as info:
        format_for_gateway("+639171234567", "SG", "e164")
    assert info.value.reason == ("+639171234567 is not a SG number; this gateway only sends to SG")


def test_format_for_gateway_requires_e164() -> None:
    """A national-format string is not E.164 and is refused rather than guessed."""
    with pytest.raises(InvalidNumber, match="international form"):
        format_for_gateway("09171234567", "PH", "national")


def test_format_for_gateway_rejects_unknown_style() -> None:
    """An unknown style is a programming error, reported as ValueError (not InvalidNumber)."""
    with pytest.raises(ValueError, match="unknown number style") as info:
        format_for_gateway("+639171234567", "PH", "local")  # type: ignore[arg-type]
    assert not isinstance(info.value, InvalidNumber)


def test_describe() -> None:
    """describe() gives the national, international, type and region forms of a number."""
    info = describe("+639171234567")
    assert info.e164 == "+639171234567"
    assert info.national == "0917 123 4567"
    assert info.international == "+63 917 123 4567"
    assert info.type == "MOBILE"
    assert info.region == "PH"


# --- properties -------------------------------------------------------------------------------

_REGIONS = st.sampled_from(["PH", "AU", "AO", "KE", "UG", "US", "GB", "XX", "", "ph"])
_DIGITS = st.text(alphabet="0123456789", max_size=20)
_PHONEISH = st.from_regex(r"\A\+?[0-9 ()\-.]{0,24}\Z")


@given(st.one_of(st.text(), _DIGITS, _PHONEISH), _REGIONS)
def test_normalize_only_raises_invalid_number(raw: str, region: str) -> None:
    """On any input normalize returns E.164 or raises InvalidNumber, never anything else."""
    error: InvalidNumber | None = None
    try:
        e164 = normalize(raw, region)
    except InvalidNumber as exc:
        error = exc
    if error is not None:
        assert error.reason
        assert error.raw == raw
        return
    assert e164.startswith("+")
    assert e164[1:].isdigit()
    # E.164 is a fixed point: normalising it again under any region changes nothing.
    assert normalize(e164, "XX") == e164


@given(st.one_of(st.from_regex(r"\A\+63[89][0-9]{9}\Z"), _DIGITS.map(lambda d: "+63" + d)))
def test_format_for_gateway_on_normalized_ph_numbers(raw: str) -> None:
    """Every PH number normalize accepts is sent to Cast as 11 national digits starting with 0."""
    try:
        e164 = normalize(raw, "PH")
    except InvalidNumber:
        return
    national = format_for_gateway(e164, "PH", "national")
    assert len(national) == 11
    assert national.startswith("0")
    assert national.isdigit()

"""The stand-in's decoding of Stripe's bracketed form fields, and key sealing for claims."""

from __future__ import annotations

import pytest

from devkit.standin.forms import FormError, decode
from tollway.sealing import seal, unseal


def test_nested_dicts_and_lists():
    """a[b][0][c]=v nests into dicts and lists as Stripe encodes them."""
    got = decode([("mode", "subscription"), ("line_items[0][price]", "p1"), ("line_items[0][quantity]", "1"),
                  ("line_items[1][price]", "p2"), ("metadata[tier]", "pro"), ("lookup_keys[]", "a"),
                  ("lookup_keys[]", "b")])  # fmt: skip
    assert got == {
        "mode": "subscription",
        "line_items": [{"price": "p1", "quantity": "1"}, {"price": "p2"}],
        "metadata": {"tier": "pro"},
        "lookup_keys": ["a", "b"],
    }


@pytest.mark.parametrize(
    "pairs", [[("a]", "1")], [("a", "1"), ("a[b]", "2")], [("a[b]", "1"), ("a", "2")]]
)
def test_inconsistent_names_are_refused(pairs):
    """Names whose brackets do not nest consistently raise FormError, never crash."""
    with pytest.raises(FormError):
        decode(pairs)


def test_sealed_key_round_trips_and_hides_the_key():
    """A sealed key opens with the same session and a secret it was sealed with, and is not
    the key in plain sight; after a rotation it still opens while its secret is listed."""
    key = "tw_live_" + "A" * 49

    def fits(text: str) -> bool:
        return text == key

    sealed = seal(key, "cs_1", b"pepper")
    assert key not in sealed and "tw_live" not in bytes.fromhex(sealed).decode("latin-1")
    assert unseal(sealed, "cs_1", [b"pepper"], fits) == key
    assert unseal(sealed, "cs_1", [b"new pepper", b"pepper"], fits) == key
    with pytest.raises(ValueError):
        unseal(sealed, "cs_2", [b"pepper"], fits)
    with pytest.raises(ValueError):
        unseal(sealed, "cs_1", [b"other pepper"], fits)

"""The key format: generation, checksum, hashing and key ids."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tollway.keys import (
    ALPHABET,
    KEY_LEN,
    KeyHasher,
    KeyMode,
    b62encode,
    generate_key,
    looks_like_key_id,
    parse_key,
)


def test_generated_keys_parse_with_their_mode():
    """A fresh key has the documented shape and validates offline."""
    for mode in KeyMode:
        key = generate_key(mode)
        assert key.startswith(f"tw_{mode.value}_") and len(key) == KEY_LEN
        assert parse_key(key) is mode


def test_keys_are_unique():
    """Keys carry 256 random bits: a thousand draws never collide."""
    assert len({generate_key() for _ in range(1000)}) == 1000


def test_every_single_character_typo_is_rejected():
    """Changing any one character of the body or checksum breaks the CRC32 check."""
    key = generate_key()
    for i in range(8, len(key)):
        for c in ("0", "z", "A"):
            if key[i] != c:
                typo = key[:i] + c + key[i + 1 :]
                assert parse_key(typo) is None, (i, c)


@pytest.mark.parametrize(
    "bad",
    ["", "tw_live_", "tw_prod_" + "a" * 49, "x" * KEY_LEN, "tw_live_" + "!" * 49, "tw_live_é" * 7],
)
def test_garbage_is_rejected(bad):
    """Wrong prefix, length or alphabet fails without raising."""
    assert parse_key(bad) is None


def test_transposed_characters_are_rejected():
    """Swapping two adjacent different characters is caught too."""
    key = generate_key()
    i = next(i for i in range(10, 40) if key[i] != key[i + 1])
    swapped = key[:i] + key[i + 1] + key[i] + key[i + 2 :]
    assert parse_key(swapped) is None


def test_b62_encoding_pads_and_round_trips():
    """b62encode left-pads to the width and uses the documented alphabet."""
    assert b62encode(0, 3) == "000"
    assert b62encode(61, 2) == "0z"
    assert b62encode(62, 2) == "10"
    n = 2**256 - 1
    s = b62encode(n, 43)
    assert len(s) == 43 and sum(ALPHABET.index(c) * 62**i for i, c in enumerate(reversed(s))) == n


def test_hash_is_sha256_or_peppered_hmac():
    """Without a pepper the digest is SHA-256; with one it is HMAC-SHA256."""
    key = generate_key()
    assert KeyHasher().digest(key) == hashlib.sha256(key.encode()).hexdigest()
    peppered = KeyHasher(b"pepper").digest(key)
    assert peppered == hmac.new(b"pepper", key.encode(), hashlib.sha256).hexdigest()
    assert peppered != KeyHasher().digest(key)


def test_key_id_is_a_digest_prefix_not_the_key():
    """The public key id is 16 hex digits of the digest and never part of the key."""
    key = generate_key()
    digest = KeyHasher().digest(key)
    kid = KeyHasher.key_id(digest)
    assert kid == digest[:16] and looks_like_key_id(kid)
    assert kid not in key
    assert not looks_like_key_id(key)

from __future__ import annotations

from decimal import Decimal

import pytest

from arsync.money import canonical, decimal_places, exponent, format_amount
from arsync.vault import Vault, hash_token, mask


def test_currency_exponents():
    assert exponent("KWD") == 3 and exponent("bhd") == 3 and exponent("OMR") == 3
    assert exponent("JPY") == 0 and exponent("ZAR") == 2 and exponent("XYZ") == 2


def test_canonical_and_formatting():
    assert str(canonical(Decimal("10.000"))) == "10"
    assert str(canonical(Decimal("1150.0050"))) == "1150.005"
    assert decimal_places(Decimal("0.10")) == 1
    assert format_amount(Decimal("0.1"), "ZAR") == "0.10"
    assert format_amount(Decimal("1150.005"), "KWD") == "1150.005"
    assert format_amount(Decimal("99999999999.99"), "USD") == "99999999999.99"


def test_vault_roundtrip_and_key_change():
    from cryptography.fernet import Fernet

    vault = Vault(Fernet.generate_key().decode())
    sealed = vault.encrypt("ask_topsecret")
    assert "topsecret" not in sealed and vault.decrypt(sealed) == "ask_topsecret"
    with pytest.raises(ValueError, match="ARSYNC_SECRET_KEY"):
        Vault(Fernet.generate_key().decode()).decrypt(sealed)
    with pytest.raises(ValueError, match="Fernet key"):
        Vault("not-a-key")


def test_mask_and_hash():
    assert mask("ask_abcdefgh7f3a") == "ask_…7f3a"
    assert hash_token("ark_x") == hash_token("ark_x") != hash_token("ark_y")

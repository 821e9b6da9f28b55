import json
import os

import pytest

from fedsynth.client.ledger import Ledger
from fedsynth.common.errors import BudgetExhausted, PrivacyError
from fedsynth.common.privacy import epsilon_spent

STEP = (3.0, 0.05, 100)  # epsilon ~0.72 at delta 1e-5


def test_charges_persist_across_restarts(tmp_path):
    led = Ledger.create(tmp_path, 3.0, 1e-5)
    after = led.charge([STEP], event="round", round=1)
    again = Ledger.open(tmp_path, 3.0, 1e-5)  # a restarted client
    assert again.history == [STEP]
    assert again.epsilon_spent == pytest.approx(after)
    assert again.epsilon_spent == pytest.approx(epsilon_spent([STEP], 1e-5))
    on_disk = json.loads((tmp_path / "ledger.json").read_text())
    assert on_disk["history"] == [list(STEP)]
    assert oct(os.stat(tmp_path / "ledger.json").st_mode & 0o777) == "0o600"


def test_refuses_to_exceed_cap_and_records_nothing(tmp_path):
    led = Ledger.create(tmp_path, 1.0, 1e-5)
    led.charge([(3.0, 0.05, 100)])
    spent = led.epsilon_spent
    assert not led.can_afford([(2.0, 0.05, 100)])
    with pytest.raises(BudgetExhausted, match="over the cap"):
        led.charge([(2.0, 0.05, 100)])
    assert Ledger.open(tmp_path, 1.0, 1e-5).epsilon_spent == pytest.approx(spent)


def test_cap_cannot_be_raised_but_can_be_lowered(tmp_path):
    Ledger.create(tmp_path, 1.0, 1e-5)
    with pytest.raises(PrivacyError, match="higher cap"):
        Ledger.open(tmp_path, 2.0, 1e-5)
    assert Ledger.open(tmp_path, 0.5, 1e-5).epsilon_cap == 0.5
    assert Ledger.open(tmp_path, 1.0 - 0.5, 1e-5).epsilon_cap == 0.5
    with pytest.raises(PrivacyError, match="delta"):
        Ledger.open(tmp_path, 0.5, 1e-6)


def test_corrupt_ledger_refuses_instead_of_resetting(tmp_path):
    Ledger.create(tmp_path, 1.0, 1e-5).charge([STEP])
    (tmp_path / "ledger.json").write_text('{"format": "fedsynth-ledger/1", "hist')
    with pytest.raises(PrivacyError, match="corrupt"):
        Ledger.open(tmp_path, 1.0, 1e-5)

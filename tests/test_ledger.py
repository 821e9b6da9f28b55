import json
import os

import pytest

from fedsynth.client.ledger import Ledger
from fedsynth.common.errors import BudgetExhausted, PrivacyError
from fedsynth.common.dp.accounting import epsilon_spent

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


# --------------------------------------------------------------------------- edited files
def _charged(tmp_path, n=4, cap=3.0):
    led = Ledger.create(tmp_path, cap, 1e-5)
    for r in range(1, n + 1):
        led.charge([STEP], event="round", round=r)
    return led


def _edit(tmp_path, change):
    path = tmp_path / "ledger.json"
    body = json.loads(path.read_text())
    change(body)
    path.write_text(json.dumps(body, indent=2))


def test_emptied_history_is_refused(tmp_path):
    _charged(tmp_path)
    _edit(tmp_path, lambda b: b.update(history=[]))
    with pytest.raises(PrivacyError, match=r"ledger\.json.*history") as exc:
        Ledger.open(tmp_path, 3.0, 1e-5)
    assert "4" in str(exc.value)
    _edit(tmp_path, lambda b: b.update(epsilon_spent=0.0))  # the recorded spend made to agree
    with pytest.raises(PrivacyError, match="history"):
        Ledger.open(tmp_path, 3.0, 1e-5)


def test_edited_spend_is_refused(tmp_path):
    _charged(tmp_path, n=2)
    _edit(tmp_path, lambda b: b.update(epsilon_spent=0.1))
    with pytest.raises(PrivacyError, match="epsilon_spent"):
        Ledger.open(tmp_path, 3.0, 1e-5)


def test_cap_raised_in_the_file_is_refused(tmp_path):
    _charged(tmp_path, n=1, cap=1.0)
    _edit(tmp_path, lambda b: b.update(epsilon_cap=5.0))
    with pytest.raises(PrivacyError, match=r"ledger\.json.*epsilon_cap 5.*created with .*1"):
        Ledger.open(tmp_path, 5.0, 1e-5)


def test_lowered_cap_cannot_be_raised_back_in_the_file(tmp_path):
    _charged(tmp_path, n=1, cap=2.0)
    assert Ledger.open(tmp_path, 1.5, 1e-5).epsilon_cap == 1.5
    _edit(tmp_path, lambda b: b.update(epsilon_cap=2.0))
    with pytest.raises(PrivacyError, match="cap_lowered"):
        Ledger.open(tmp_path, 2.0, 1e-5)


def _drop_last_charge(body):
    """A truncation that keeps history, events and spend consistent: only the chain sees it."""
    body["events"].pop()
    body["history"].pop()
    body["epsilon_spent"] = epsilon_spent(body["history"], 1e-5)


def _swap_charges(body):
    ev = body["events"]
    ev[-1], ev[-2] = ev[-2], ev[-1]


def _edit_an_event(body):
    body["events"][-1]["round"] = 99


@pytest.mark.parametrize("tamper, message", [(_drop_last_charge, "truncated"), (_swap_charges, "out of order"),
                                             (_edit_an_event, "edited")])
def test_hash_chain_detects_truncated_reordered_or_edited_events(tmp_path, tamper, message):
    _charged(tmp_path, n=3)
    _edit(tmp_path, tamper)
    with pytest.raises(PrivacyError, match=message):
        Ledger.open(tmp_path, 3.0, 1e-5)


def test_chain_head_is_stored_and_every_event_is_chained(tmp_path):
    led = _charged(tmp_path, n=2)
    body = json.loads((tmp_path / "ledger.json").read_text())
    assert body["events"][0]["event"] == "created" and body["events"][0]["epsilon_cap"] == 3.0
    assert [e["prev"] for e in body["events"][1:]] == [e["hash"] for e in body["events"][:-1]]
    assert body["head"] == body["events"][-1]["hash"] == led.head


def _v1_ledger(tmp_path, history, events, cap=3.0):
    """A ledger exactly as fedsynth-ledger/1 wrote it (no created event, no hashes)."""
    body = {"format": "fedsynth-ledger/1", "ledger_id": "0123456789abcdef", "created": "2024-01-01T00:00:00Z",
            "epsilon_cap": cap, "delta": 1e-5, "accountant": "rdp", "history": history,
            "epsilon_spent": epsilon_spent(history, 1e-5), "plan": {}, "events": events}
    (tmp_path / "ledger.json").write_text(json.dumps(body, indent=2))


def test_old_format_ledger_is_verified_then_migrated(tmp_path):
    events = [{"event": "round", "round": r, "releases": [list(STEP)], "epsilon_after": 0.0, "time": "t"}
              for r in (1, 2)]
    events[0]["epsilon_after"] = epsilon_spent([STEP], 1e-5)
    events[1]["epsilon_after"] = epsilon_spent([STEP, STEP], 1e-5)
    _v1_ledger(tmp_path, [list(STEP)] * 2, events)
    led = Ledger.open(tmp_path, 3.0, 1e-5)
    assert led.history == [STEP, STEP]
    body = json.loads((tmp_path / "ledger.json").read_text())
    assert body["format"] == "fedsynth-ledger/2" and body["events"][-1]["event"] == "migrated"
    assert body["head"] == body["events"][-1]["hash"]
    led.charge([STEP], event="round", round=3)
    assert Ledger.open(tmp_path, 3.0, 1e-5).history == [STEP] * 3
    # an old file whose history was emptied is refused, not migrated
    other = tmp_path / "other"
    other.mkdir()
    _v1_ledger(other, [], events)
    with pytest.raises(PrivacyError, match="history"):
        Ledger.open(other, 3.0, 1e-5)
    assert json.loads((other / "ledger.json").read_text())["format"] == "fedsynth-ledger/1"  # left as it was

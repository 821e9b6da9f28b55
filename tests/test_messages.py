"""The typed protocol messages: a round trip keeps every field and the exact wire keys; a
malformed message is refused with an error naming what is wrong."""

import pytest

from fedsynth.common.protocol.federation import FederationPlan
from fedsynth.common.protocol.messages import (
    NO_SPEND,
    BudgetCheck,
    BudgetReply,
    FitConfig,
    FitMetrics,
    MessageError,
)

PLAN = FederationPlan(rounds=7, min_clients=3, schema_hash="abc123", server_lr=2.5)


def test_fit_config_round_trip_keeps_every_field_and_the_wire_keys():
    cfg = FitConfig(plan=PLAN, round=4, total_clients=5, clipping_range=8.0, freq_size=17)
    wire = cfg.to_config()
    assert wire == {"fedsynth": PLAN.to_json(), "round": 4, "total_clients": 5, "clipping_range": 8.0,
                    "freq_size": 17}
    assert FitConfig.from_config(wire) == cfg


def test_budget_check_round_trip_with_and_without_the_optional_fields():
    full = BudgetCheck(plan=PLAN, total_clients=3, round=2, arrays_sha256="f" * 64)
    wire = full.to_config()
    assert wire == {"fedsynth": PLAN.to_json(), "total_clients": 3, "round": 2, "arrays_sha256": "f" * 64}
    assert BudgetCheck.from_config(wire) == full
    bare = BudgetCheck(plan=PLAN, total_clients=3)
    assert bare.to_config() == {"fedsynth": PLAN.to_json(), "total_clients": 3}  # no None on the wire
    assert BudgetCheck.from_config(bare.to_config()) == bare


@pytest.mark.parametrize("reply, wire", [
    (BudgetReply(can_train=True, reason="", schema_hash="h", epsilon_spent=0.42, delta=1e-5),
     {"can_train": True, "reason": "", "schema_hash": "h", "epsilon_spent": 0.42, "delta": 1e-5}),
    (BudgetReply(can_train=False, reason="schema mismatch", schema_hash="h", epsilon_spent=NO_SPEND),
     {"can_train": False, "reason": "schema mismatch", "schema_hash": "h", "epsilon_spent": -1.0}),
    (BudgetReply(can_train=False, reason="error: node offline", unreachable=True),
     {"can_train": False, "reason": "error: node offline", "unreachable": True}),
    (BudgetReply(can_train=True, reason="", schema_hash="h", epsilon_spent=0.5, delta=1e-5, epsilon_alone=0.9,
                 rounds_left=7),  # shared noise
     {"can_train": True, "reason": "", "schema_hash": "h", "epsilon_spent": 0.5, "delta": 1e-5, "epsilon_alone": 0.9,
      "rounds_left": 7}),
])
def test_budget_reply_round_trip_keeps_every_field_and_the_wire_record(reply, wire):
    assert reply.to_record() == wire
    assert BudgetReply.from_record(wire) == reply


def test_fit_metrics_round_trip():
    trained = FitMetrics(epsilon_spent=0.31, norm_clipped=1.0, replayed=0.0, refused=0.0)
    assert trained.to_record() == {"epsilon_spent": 0.31, "norm_clipped": 1.0, "replayed": 0.0, "refused": 0.0}
    assert FitMetrics.from_record(trained.to_record()) == trained
    assert FitMetrics(refused=1.0).to_record() == {"refused": 1.0}  # a refusal says nothing else
    assert FitMetrics.from_record({"refused": 1}) == FitMetrics(refused=1.0)


@pytest.mark.parametrize("bad, message", [
    ({"reason": ""}, "no 'can_train'"),
    ({"can_train": "yes", "reason": ""}, "'can_train' = 'yes' is not true/false"),
    ({"can_train": 1, "reason": ""}, "is not true/false"),
    ({"can_train": True}, "no 'reason'"),
    ({"can_train": True, "reason": "", "epsilon_spent": "0.5"}, "'epsilon_spent' = '0.5' is not a number"),
    ({"can_train": True, "reason": "", "epsilon_spent": True}, "is not a number"),
    ({"can_train": True, "reason": "", "schema_hash": 7}, "'schema_hash' = 7 is not a string"),
    ({"can_train": True, "reason": "", "rounds_left": 2.5}, "'rounds_left' = 2.5 is not an integer"),
])
def test_a_malformed_budget_reply_is_refused_with_a_clear_error(bad, message):
    with pytest.raises(MessageError, match=f"malformed budget reply: .*{message}"):
        BudgetReply.from_record(bad)


@pytest.mark.parametrize("change, message", [
    ({"round": "4"}, "'round' = '4' is not an integer"),
    ({"round": 4.0}, "'round' = 4.0 is not an integer"),
    ({"total_clients": None}, "'total_clients' = None is not an integer"),
    ({"clipping_range": "8"}, "'clipping_range' = '8' is not a number"),
    ({"fedsynth": "{not json"}, "'fedsynth' is not a federation plan"),
    ({"fedsynth": '{"rounds": 3}'}, "'fedsynth' is not a federation plan"),
    ({"fedsynth": b"{}"}, "'fedsynth' = b'{}' is not a string"),
])
def test_a_malformed_fit_config_is_refused_with_a_clear_error(change, message):
    wire = {**FitConfig(plan=PLAN, round=4, total_clients=5, clipping_range=8.0, freq_size=17).to_config(), **change}
    with pytest.raises(MessageError, match=f"malformed fit config: .*{message}"):
        FitConfig.from_config(wire)
    missing = FitConfig(plan=PLAN, round=4, total_clients=5, clipping_range=8.0, freq_size=17).to_config()
    del missing["freq_size"]
    with pytest.raises(MessageError, match="malformed fit config: no 'freq_size'"):
        FitConfig.from_config(missing)


def test_a_malformed_budget_check_or_fit_metrics_is_refused():
    with pytest.raises(MessageError, match="malformed budget check: no 'total_clients'"):
        BudgetCheck.from_config({"fedsynth": PLAN.to_json()})
    with pytest.raises(MessageError, match="malformed budget check: 'arrays_sha256' = 3 is not a string"):
        BudgetCheck.from_config({**BudgetCheck(PLAN, 3).to_config(), "arrays_sha256": 3})
    with pytest.raises(MessageError, match="malformed fit metrics: 'replayed' = 'no' is not a number"):
        FitMetrics.from_record({"replayed": "no"})


def test_the_coordinator_reads_a_malformed_budget_reply_as_a_refusal_that_says_why():
    from fedsynth.server.workflow import read_budget_reply

    ok = {"can_train": True, "reason": "", "schema_hash": "h", "epsilon_spent": 0.2, "delta": 1e-5}
    assert read_budget_reply(ok) == BudgetReply.from_record(ok)
    refused = read_budget_reply({"can_train": "yes", "reason": ""})
    assert refused.can_train is False and "'can_train' = 'yes' is not true/false" in refused.reason

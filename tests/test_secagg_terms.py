"""An institution's check that the SecAgg+ terms of a round are the ones its plan was accounted
for (fedsynth.client.secagg_terms). The terms are Flower's own client-side SecAgg+ state; the
honest ones are what the coordinator's run_secagg and shared_threshold produce.
tests/test_federated_faults.py runs the check inside a real SecAgg+ round."""

from dataclasses import replace

import pytest
from flwr.client.mod.secure_aggregation.secaggplus_mod import SecAggPlusState

from fedsynth.client.secagg_terms import secagg_terms_problem
from fedsynth.common.dp.shared_noise import SharedNoise
from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.protocol.federation import FederationPlan, SecAggSettings, run_secagg, shared_threshold
from fedsynth.common.protocol.messages import FitConfig

K_MIN = 4


def fit_and_terms(schema, shared: bool, clients: int = 5, **lie):
    """The fit instruction and the SecAgg+ terms an honest coordinator sends, with ``lie`` applied to the terms."""
    noise = SharedNoise(sample_rate=0.1, noise_multiplier=2.0, min_contributors=K_MIN) if shared else None
    plan = FederationPlan(rounds=3, model=ModelConfig(hidden=16), schema_hash=schema.hash(), shared_noise=noise,
                          min_clients=K_MIN if shared else 2)
    s = run_secagg(SecAggSettings(), plan)
    shares, threshold = s.for_round(clients)
    count = shared_threshold(shares, threshold, clients, K_MIN) if shared else 3
    state = dict(threshold=count, clipping_range=s.clipping_range, target_range=s.quantization_range,
                 mod_range=s.modulus_range)
    state.update(lie)
    return FitConfig(plan, 1, clients, s.clipping_range, 10), SecAggPlusState(**state).to_dict()


@pytest.mark.parametrize("shared", [True, False])
def test_an_honest_coordinators_terms_pass(adult_schema, shared):
    assert secagg_terms_problem(*fit_and_terms(adult_schema, shared)) is None


@pytest.mark.parametrize(("lie", "named"), [
    ({"threshold": K_MIN - 1}, "threshold 3 is below the plan's min_contributors 4"),
    ({"target_range": 2**22}, "4194304 levels"),
    ({"clipping_range": 8.0}, "clipping range 8"),
    ({"mod_range": 2**31 + 2**25}, "mask modulus"),
])
def test_shared_noise_refuses_terms_that_change_the_accounted_sum(adult_schema, lie, named):
    problem = secagg_terms_problem(*fit_and_terms(adult_schema, True, **lie))
    assert problem is not None and named in problem


def test_local_noise_needs_only_the_clipping_range_it_packs_for(adult_schema):
    fit, terms = fit_and_terms(adult_schema, False, threshold=2, target_range=2**20)
    assert secagg_terms_problem(fit, terms) is None  # its noise is complete in each update
    problem = secagg_terms_problem(replace(fit, clipping_range=4.0), terms)
    assert problem is not None and "clipping range 8" in problem

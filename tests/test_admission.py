"""The ingress's admission of model calls (pure logic; tests/api/test_overload.py runs it in the app)."""

import pytest

from sutazai.admission import Admission, replica_share
from sutazai.catalog import Autoscaling, DeploymentOptions, ModelCatalog
from sutazai.errors import Unavailable
from sutazai.settings import Settings


def spec(max_ongoing: int, max_queued: int, max_replicas: int):
    base = next(iter(ModelCatalog.load(Settings().models_dir).specs.values()))
    return base.model_copy(
        update={
            "deployment": DeploymentOptions(max_ongoing_requests=max_ongoing, max_queued_requests=max_queued),
            "autoscaling": Autoscaling(min_replicas=1, max_replicas=max_replicas),
        }
    )


def test_a_replicas_share_is_its_part_of_the_running_places_plus_a_handles_queue():
    assert replica_share(spec(10, 4, 1), ingress_replicas=2) == 5 + 4
    assert replica_share(spec(10, 4, 3), ingress_replicas=2) == 15 + 4
    assert replica_share(spec(10, 4, 1), ingress_replicas=4) == 3 + 4  # rounded up: never below the real share
    assert replica_share(spec(10, 0, 1), ingress_replicas=1) == 10


def test_a_deployment_that_queues_without_limit_bounds_nothing():
    assert replica_share(spec(10, -1, 1), ingress_replicas=2) is None
    admission = Admission("m", None, retry_after_s=1)
    tickets = [admission.take() for _ in range(1000)]
    assert admission.in_flight == len(tickets)


def test_a_call_beyond_the_share_is_refused_with_a_retry_delay():
    admission = Admission("gemma", 2, retry_after_s=3)
    admission.take()
    admission.take()
    with pytest.raises(Unavailable) as refused:
        admission.take()
    assert refused.value.retry_after_s == 3
    assert "gemma is at capacity" in refused.value.message
    assert admission.in_flight == 2  # a refusal takes nothing


def test_a_released_place_admits_the_next_call_and_a_ticket_gives_back_only_once():
    admission = Admission("m", 1, retry_after_s=1)
    ticket = admission.take()
    ticket.release()
    ticket.release()
    assert admission.in_flight == 0
    admission.take()
    with pytest.raises(Unavailable):
        admission.take()


def test_a_batch_takes_a_place_per_prompt_but_at_most_the_whole_share():
    admission = Admission("m", 4, retry_after_s=1)
    admission.take(3).release()
    big = admission.take(10)  # alone it may run: it takes the whole share
    assert big.places == 4 and admission.in_flight == 4
    with pytest.raises(Unavailable):
        admission.take(1)
    big.release()
    admission.take(3)
    with pytest.raises(Unavailable):
        admission.take(2)


def test_a_reservation_dropped_without_settling_gives_its_places_back():
    import gc

    from sutazai.api.deps import Reservation

    admission = Admission("m", 2, retry_after_s=1)
    reservation = Reservation(caller=None, prompt_tokens=0, tokens=0, ticket=admission.take())  # type: ignore[arg-type]
    assert admission.in_flight == 1
    del reservation
    gc.collect()
    assert admission.in_flight == 0

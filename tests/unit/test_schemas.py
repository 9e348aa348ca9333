"""shared/schemas.py: task payloads are versioned JSON, and nothing else gets through."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared.schemas import ProcessBatch, Stage

PAYLOAD = {"version": 1, "batch_id": 7, "stage": "detect", "detector_version_id": 3, "image_ids": [11, 12, 13]}


def test_process_batch_round_trips_through_json() -> None:
    payload = ProcessBatch(batch_id=7, stage=Stage.DETECT, detector_version_id=3, image_ids=[11, 12, 13])

    wire = json.dumps(payload.model_dump(mode="json"))  # what Celery's JSON serializer sends

    assert json.loads(wire) == PAYLOAD
    assert ProcessBatch.model_validate(json.loads(wire)) == payload
    assert ProcessBatch.model_validate_json(payload.model_dump_json()) == payload


def test_version_defaults_to_1() -> None:
    message = {k: v for k, v in PAYLOAD.items() if k != "version"}

    assert ProcessBatch.model_validate(message).version == 1


@pytest.mark.parametrize("change", [
    {"version": 2},
    {"version": "2"},
    {"priority": 5},  # an unknown field
    {"stage": "train"},  # not a stage
    {"image_ids": []},
    {"batch_id": "seven"},
])
def test_invalid_messages_are_rejected(change: dict) -> None:
    with pytest.raises(ValidationError):
        ProcessBatch.model_validate(PAYLOAD | change)


def test_a_missing_field_is_rejected() -> None:
    with pytest.raises(ValidationError, match="detector_version_id"):
        ProcessBatch.model_validate({k: v for k, v in PAYLOAD.items() if k != "detector_version_id"})


def test_a_message_of_trapline_0_1_with_the_old_key_is_still_read() -> None:
    """Batches queued before an upgrade named the detector's id model_version_id."""
    old = {k: v for k, v in PAYLOAD.items() if k != "detector_version_id"} | {"model_version_id": 3}

    assert ProcessBatch.model_validate(old) == ProcessBatch.model_validate(PAYLOAD)
    with pytest.raises(ValidationError):  # both keys at once: the old one is an unknown field
        ProcessBatch.model_validate(PAYLOAD | {"model_version_id": 3})


def test_payloads_are_frozen() -> None:
    payload = ProcessBatch.model_validate(PAYLOAD)

    with pytest.raises(ValidationError):
        payload.batch_id = 8  # type: ignore[misc]

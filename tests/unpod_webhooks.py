"""Webhook deliveries shaped as Unpod's platform source sends them (``varun-ag1/unpod``).

- ``task_document``: ``WebhookHandler.execute`` posts ``TaskModel.get(...).dict()`` minus
  ``id``, datetimes made ``str()`` by its ``sanitize`` (``TaskBaseModel`` with
  ``UserBaseSchema`` and ``CreateUpdateMixinModel``; ``output`` as ``call_execution.py`` builds
  it, ``post_call_data.summary`` as ``core_components/tasks`` reads it).
- ``cron_task``: ``calls_cron.execute_webhook_if_configured`` posts a subset of the task.
- ``call_event``: ``super/core/voice/common/common.py`` ``send_web_notification``.

Every personal value is one of ``PERSONAL``, so that tests can look for them anywhere.
"""

from __future__ import annotations

from typing import Any

PHONE = "+919876543210"
NAME = "Asha Verma"
EMAIL = "asha.verma@example.com"
TRANSCRIPT = "Hello Asha, this is about your loan application"
RECORDING = "https://recordings.example.com/rec-77.mp3"
SUMMARY = "Customer asked to be called back on Friday"
PERSONAL = (PHONE, NAME, EMAIL, TRANSCRIPT, RECORDING, SUMMARY, "9876543210", "Asha")


def post_call_data(status: str | None) -> dict[str, Any]:
    summary: dict[str, Any] = {"summary": SUMMARY, "name": NAME, "contact": PHONE,
                               "callback_datetime": "2025-02-07 11:00:00"}
    if status is not None:
        summary["status"] = status
    return {"summary": summary, "success_evaluator": 7,
            "classification": {"labels": ["callback"]},
            "structured_data": {"customer_name": NAME, "email": EMAIL}}


def task_output(outcome: str | None = "Call Back") -> dict[str, Any]:
    return {"call_id": "TH9d0c", "customer": NAME, "contact_number": PHONE,
            "call_end_reason": "customer-ended-call", "recording_url": RECORDING,
            "transcript": [{"role": "assistant", "content": TRANSCRIPT}],
            "start_time": "2025-01-31 10:00:00.120000", "end_time": "2025-01-31 10:02:05.620000",
            "assistant_number": "", "call_summary": SUMMARY, "duration": 125.5, "cost": 0.84,
            "post_call_data": post_call_data(outcome), "call_type": "outbound",
            "metadata": {"cost": 0.84, "type": "outboundPhoneCall", "usage": {}}}


def task_document(task_id: str = "T7f3a9c10e5d611f0", status: str = "completed",
                  assignee: str = "space-agent-8qmk42",
                  outcome: str | None = "Call Back") -> dict[str, Any]:
    return {
        "space_id": "412", "thread_id": "TH9d0c", "user": "38",
        "user_org_id": "17", "user_info": {"full_name": NAME, "email": EMAIL},
        "created": "2025-01-31 09:58:12.004211", "modified": "2025-01-31 10:02:07.300100",
        "task_id": task_id, "run_id": "R8a1b2c3d", "collection_ref": "collection_data_412",
        "task": {"objective": "loan follow-up"},
        "input": {"name": NAME, "contact_number": PHONE, "email": EMAIL},
        "output": task_output(outcome) if status == "completed" else {"error": "no answer"},
        "attachments": [], "assignee": assignee, "status": status, "execution_type": "call",
        "ref_id": None, "failure_count": 0, "last_failure_reason": None, "provider": "vapi",
        "retry_attempt": 0, "last_status_change": "2025-01-31T10:02:07.300100",
        "scheduled_timestamp": None,
    }


def cron_task(task_id: str = "T7f3a9c10e5d611f0", status: str = "completed",
              assignee: str = "space-agent-8qmk42",
              outcome: str | None = "Call Back") -> dict[str, Any]:
    document = task_document(task_id, status, assignee, outcome)
    return {key: document[key] for key in ("task_id", "space_id", "run_id", "assignee",
                                           "status", "execution_type", "output")}


def call_event(event: str = "call_started", call_id: str = "TH9d0c",
               agent_id: str = "space-agent-8qmk42",
               start_time: str = "2025-01-31 10:00:00.120000",
               end_time: str = "None") -> dict[str, Any]:
    return {
        "event": event, "status": "completed",
        "data": {
            "call_id": call_id, "task_id": "T7f3a9c10e5d611f0", "contact_number": PHONE,
            "contact_name": NAME,
            "config": {"agent_id": agent_id, "space_token": "sp_456", "first_message":
                       f"Hello {NAME}", "language": "en"},
            "transcript": [{"role": "user", "content": TRANSCRIPT}],
            "room": "room-TH9d0c", "usage": {"llm_tokens": 812},
            "start_time": start_time, "end_time": end_time, "call_type": "outbound"},
    }

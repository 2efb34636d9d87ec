"""An SNS topic with an SQS queue subscribed to it: read back exactly what subscribers receive."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

TOPIC_REGION = "eu-west-1"
TOPIC_ARN = f"arn:aws:sns:{TOPIC_REGION}:123456789012:aurora-restore-notifications"


@dataclass
class Delivery:
    """One notification as an SQS subscriber sees it (SNS's JSON envelope)."""

    subject: str
    message: dict[str, Any]
    raw_message: str
    attributes: dict[str, str]
    message_id: str


class Inbox:
    """The stack's topic (in ``TOPIC_REGION``) and a queue subscribed to everything on it."""

    def __init__(self, clients: Any) -> None:
        self._clients = clients
        self.sns = clients("sns", TOPIC_REGION)
        self.sqs = clients("sqs", TOPIC_REGION)
        self.topic_arn = self.sns.create_topic(Name=TOPIC_ARN.rsplit(":", 1)[1])["TopicArn"]
        assert self.topic_arn == TOPIC_ARN
        self.queue_url = self.subscribe_queue("everything")

    def subscribe_queue(
        self, name: str, *, filter_policy: dict[str, Any] | None = None, raw: bool = False
    ) -> str:
        """Subscribe a new queue, optionally with a filter policy; return its URL."""
        url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        attributes = {"RawMessageDelivery": "true" if raw else "false"}
        if filter_policy is not None:
            attributes["FilterPolicy"] = json.dumps(filter_policy)
        self.sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=arn, Attributes=attributes)
        return url

    def receive(self, queue_url: str | None = None) -> list[dict[str, Any]]:
        """Every SQS message waiting on the queue, removed from it."""
        url = queue_url or self.queue_url
        received: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not batch:
                return received
            for message in batch:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            received.extend(batch)

    def deliveries(self) -> list[Delivery]:
        """The notifications published so far (envelope delivery: subject and attributes included)."""
        out = []
        for sqs_message in self.receive():
            envelope = json.loads(sqs_message["Body"])
            out.append(
                Delivery(
                    subject=envelope.get("Subject", ""),
                    message=json.loads(envelope["Message"]),
                    raw_message=envelope["Message"],
                    attributes={k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()},
                    message_id=envelope["MessageId"],
                )
            )
        return out

"""A stand-in harvest actor for device tests: records every batch, acknowledges when told to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.harvest.messages import BatchAck, CounterOffsets, CounterOffsetsRequest, ReadingBatch
from supervisor.actor import SupervisedActor


@dataclass(frozen=True)
class GetBatches:
    pass


@dataclass(frozen=True)
class Batches:
    batches: tuple


class HarvestStub(SupervisedActor):
    """config: {"ack": bool}. Keeps the batches it received (re-sends de-duplicated by id)."""

    def on_start(self, config: Any) -> None:
        self.ack = bool((config or {}).get("ack", True))
        self.batches: dict[tuple[str, int], ReadingBatch] = {}

    def receiveMsg_CounterOffsetsRequest(self, msg: CounterOffsetsRequest, sender: Any) -> None:  # noqa: N802
        self.send(sender, CounterOffsets({}))  # nothing stored: a device starts from its registers

    def receiveMsg_ReadingBatch(self, msg: ReadingBatch, sender: Any) -> None:  # noqa: N802
        self.batches[(msg.producer, msg.batch_id)] = msg
        if self.ack:
            self.send(sender, BatchAck(msg.producer, msg.batch_id))

    def receiveMsg_GetBatches(self, msg: GetBatches, sender: Any) -> None:  # noqa: N802
        self.send(sender, Batches(tuple(self.batches.values())))

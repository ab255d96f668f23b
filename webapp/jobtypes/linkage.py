"""The steps of an envelope's chain (SPEC 9, S4): one job type whose runs each do one step of one
envelope (`step=load envelope=12`), on the serial `processing` queue, so every step of every project
runs one at a time across all workers, in the order they were queued: an envelope's five steps are
queued together at upload, so envelopes are processed whole, in upload order. webapp/linkage/chain.py
keeps the chain; the steps' work is in webapp/linkage/."""
from marshmallow import Schema, fields, validate

from webapp.jobtypes.registry import JobType, register

KEY = "linkage.step"
QUEUE = "processing"
STEPS = ("validate", "load", "match", "group", "report")
ROLLBACK = "rollback"


class StepParams(Schema):
    step = fields.String(required=True, validate=validate.OneOf(STEPS + (ROLLBACK,)),
                         metadata={"label": "Step"})
    envelope = fields.Integer(required=True, strict=False, validate=validate.Range(1, 2**31 - 1),
                              metadata={"label": "Envelope"})


def run(ctx, step, envelope):
    chain.run_step(ctx, step, envelope)


register(JobType(
    key=KEY,
    label="Envelope step",
    run=run,
    params=StepParams,
    user_creatable=False,
    queue=QUEUE,
    serial_queue=True,
    timeout=6 * 3600,
    description="One step of an envelope's chain: validate, load, match, group, report, or a rollback.",
))

# Last: the chain needs the names above, and registers its finish hook (which keeps each envelope's
# chain and status) in every process that loads the job types.
from webapp.linkage import chain  # noqa: E402

"""The DAG-steps benchmark really runs every task through begin and complete."""

from loadtest.dagsteps import dag_steps_us
from services.core import keys


def test_dag_steps_row_finishes_every_job(redis_client):
    assert dag_steps_us(redis_client, 130) > 0  # three batches of 64, the last partial
    jobs = list(redis_client.scan_iter(match=keys.job("*"), count=1000))
    assert len(jobs) == 130
    assert {redis_client.hget(job, "status") for job in jobs} == {b"succeeded"}
    assert redis_client.xlen(keys.stream("noop")) == 0  # every task acked

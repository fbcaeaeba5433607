"""distributed/worker.py: a job's place and its share of the global batch."""

from gluon_resnet.distributed import Job


def test_a_single_process_job_and_the_global_batch():
    job = Job()
    assert job.lead and not job.distributed and job.local_batch(256) == 256
    two = Job(rank=1, num_workers=2, kvstore="dist_sync")
    assert not two.lead and two.local_batch(50) == 25
    assert two.describe(50) == "distributed: 2 workers, kvstore dist_sync, global batch 50 = 2 x 25"

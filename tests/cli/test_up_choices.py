"""What ``posefleet up`` chooses per process when the environment does not say."""

from services.cli.local import gateway_processes, worker_groups
from services.core.runtime.cpus import available_cpus
from services.core.settings import Settings


def test_one_gateway_process_per_cpu_unless_set():
    assert gateway_processes(Settings()) == available_cpus()
    assert gateway_processes(Settings(gateway_processes=3)) == 3


def test_two_copies_with_every_cpu_per_worker_unless_set():
    assert worker_groups(Settings()) == {
        "POSEFLEET_INSTANCES": "2",
        "POSEFLEET_INTRA_OP_THREADS": str(available_cpus()),
    }
    assert worker_groups(Settings(instances=1, intra_op_threads=1)) == {}

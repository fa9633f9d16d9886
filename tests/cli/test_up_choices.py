"""What ``posefleet up`` chooses per process when the environment does not say."""

from services.cli.local import gateway_processes
from services.core.runtime.cpus import available_cpus
from services.core.settings import Settings


def test_one_gateway_process_per_cpu_unless_set():
    assert gateway_processes(Settings()) == available_cpus()
    assert gateway_processes(Settings(gateway_processes=3)) == 3

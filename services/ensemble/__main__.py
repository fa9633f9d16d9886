"""``python -m services.ensemble ROLE``: one worker of the ensemble service, in one of its roles
(``classifier-a``, ``classifier-b``, ``combine``), each its own Deployment."""

import sys

from services.core.worker import run_stage

ROLES = ("classifier-a", "classifier-b", "combine")

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ROLES:
        raise SystemExit(f"usage: python -m services.ensemble {{{','.join(ROLES)}}}")
    raise SystemExit(run_stage(sys.argv[1]))

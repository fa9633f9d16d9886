"""``python -m services.multipose``: one multi-person pose worker process."""

from services.core.worker import run_stage

if __name__ == "__main__":
    raise SystemExit(run_stage("multipose"))

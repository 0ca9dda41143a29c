"""The demo's deploy command: prints progress over a few seconds and records the deployed tag."""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    """Simulate a deploy of TAG to ENVIRONMENT and write the tag to STATE_DIR/ENVIRONMENT."""
    if len(argv) not in (3, 4):
        print("usage: python -m relapp.demo_deploy ENVIRONMENT TAG STATE_DIR [STEP_SECONDS]", file=sys.stderr)
        return 2
    environment, tag, state_dir = argv[:3]
    delay = float(argv[3]) if len(argv) == 4 else 0.8
    steps = ("pulling artefact", "stopping old instances", "starting new instances", "health check")
    for index, step in enumerate(steps, 1):
        print(f"[{index}/{len(steps)}] {environment}: {step} for {tag}", flush=True)
        time.sleep(delay)
    folder = Path(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / environment).write_text(tag + "\n", encoding="utf-8")
    print(f"{environment} now runs {tag}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

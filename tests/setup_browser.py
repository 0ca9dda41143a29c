"""Make sure Debian's Chromium is installed for the browser tests (a browser download at test time
is not possible here; Debian's package is)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    if os.path.exists(CHROMIUM):
        return 0
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print(f"The browser tests need Debian's chromium at {CHROMIUM}: install it with "
              "`apt-get install chromium` (as root).", file=sys.stderr)
        return 1
    print("Installing Debian's chromium for the browser tests ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
                   check=True, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())

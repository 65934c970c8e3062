"""`python -m plaid_vcr ARGS`: runs the plaid-vcr executable, for when PATH is awkward."""

import os
import subprocess
import sys

from plaid_vcr import PlaidVcrError, find_binary


def main() -> int:
    try:
        binary = find_binary()
    except PlaidVcrError as e:
        print(f"plaid-vcr: {e}", file=sys.stderr)
        return 2
    if sys.platform == "win32":
        return subprocess.call([binary, *sys.argv[1:]])
    os.execv(binary, [binary, *sys.argv[1:]])
    return 2  # execv does not return


if __name__ == "__main__":
    sys.exit(main())

"""``python -m PETITELib.reports docs [--check] [--root DIR]``: regenerate the docs' generated sections."""
import argparse
import sys
from pathlib import Path

from . import update_docs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m PETITELib.reports", description=__doc__)
    parser.add_argument("what", choices=["docs"])
    parser.add_argument("--check", action="store_true", help="only report files that would change (exit 1)")
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2]), help="repository root")
    args = parser.parse_args(argv)
    changed = update_docs(Path(args.root), check=args.check)
    for path in changed:
        print(f"{'differs' if args.check else 'updated'}: {path}")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())

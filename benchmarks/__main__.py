"""``python -m benchmarks <shape> [<shape> ...] [--smoke]``: see :mod:`benchmarks.runner`;
``python -m benchmarks startup``: see :mod:`benchmarks.startup`;
``python -m benchmarks production``: see :mod:`benchmarks.production`;
``python -m benchmarks traces``: see :mod:`benchmarks.traces`;
``python -m benchmarks s3-files``: see :mod:`benchmarks.s3_files`.

Every one first compiles arcuate's bytecode (:mod:`benchmarks.bytecode`), as an installed copy
has it."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from benchmarks.bytecode import compile_packages

    print(compile_packages(), flush=True)
    if sys.argv[1:2] == ["startup"]:
        from benchmarks.startup import main as startup

        sys.exit(startup(sys.argv[2:]))
    if sys.argv[1:2] == ["production"]:
        from benchmarks.production import main as production

        sys.exit(production(sys.argv[2:]))
    if sys.argv[1:2] == ["traces"]:
        from benchmarks.traces import main as traces

        sys.exit(traces(sys.argv[2:]))
    if sys.argv[1:2] == ["s3-files"]:
        from benchmarks.s3_files import main as s3_files

        sys.exit(s3_files(sys.argv[2:]))
    from benchmarks.runner import main

    sys.exit(main())

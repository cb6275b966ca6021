"""``python -m benchmarks.signing <table dir> <public key> [rounds]``: what verifying a signed
table adds to an import's pass 1, measured in one process.

The end-to-end ``--signed`` rounds of ``python -m benchmarks bench-200 --signed`` compare whole
imports, whose seconds drift by more than the verification costs on a loaded machine. This
reads the table (a ``--dir`` run keeps it) once into memory, then validates and spools it
``rounds`` times without and with the record digests, alternating, and verifies the signature
after each digesting pass: the difference is the work verification adds.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    from deltalake import DeltaTable

    from arcuate.engine import signing
    from arcuate.engine.imports.spool import Spool

    location, public = argv[0], Path(argv[1])
    rounds = int(argv[2]) if len(argv) > 2 else 7
    batches = DeltaTable(location).to_pyarrow_table().to_batches()
    kinds = set(batches[0].column("kind").to_pylist())
    content = "model" if "model_version" in kinds else "experiment"
    key = signing.read_key(str(public))
    plain: list[float] = []
    verified: list[float] = []
    for _ in range(rounds):
        for digests, out in ((False, plain), (True, verified)):
            with Spool.open(content) as spool:  # type: ignore[arg-type]
                start = time.perf_counter()
                if digests:
                    spool.digest_records()
                spool.ingest(batches)
                if digests:
                    found = spool.digests or {}
                    signing.verify(spool.signature, found, spool.exported_at, key, "local")
                out.append(time.perf_counter() - start)
    a, b = statistics.median(plain), statistics.median(verified)
    print(
        f"pass 1 of {sum(len(x) for x in batches)} rows: {a:.3f} s, with digests and verification"
        f" {b:.3f} s (medians of {rounds}): +{b - a:.3f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

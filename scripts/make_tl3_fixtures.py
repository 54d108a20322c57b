"""Write tests/fixtures/tl3: one checkpoint per field case of tests/test_fields.py, written by
plain TransformerLens 3 code (HookedTransformer's own state dict), with the logits its own
forward gives on fixed tokens. TransformerLens 4 must load each to the same logits.

Run under transformer-lens 3 (make test-tl3 builds .venv-tl3):
    .venv-tl3/bin/python scripts/make_tl3_fixtures.py
"""

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_fields import BASE, FIELD_CASES, FIXTURES, TOKENS, write_plain

from headcoop.compat import TL_VERSION


def main() -> None:
    if TL_VERSION[0] != 3:
        sys.exit(
            "run this under transformer-lens 3: .venv-tl3/bin/python scripts/make_tl3_fixtures.py"
        )
    shutil.rmtree(FIXTURES, ignore_errors=True)
    for k, (case, change) in enumerate(FIELD_CASES.items()):
        directory = FIXTURES / case.replace(" ", "_").replace(",", "")
        weights = "model.pt" if k % 2 else "model.safetensors"
        model = write_plain(directory, BASE | change, weights)
        logits = model(TOKENS).detach()
        (directory / "logits.json").write_text(
            json.dumps({"tokens": TOKENS.tolist(), "logits": logits.tolist()})
        )
        print(f"{directory.name}: {weights}")


if __name__ == "__main__":
    main()

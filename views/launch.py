"""`speckle-vae-explorer`: the console script of an installed package, the same as
`streamlit run app.py` from the repository root.

Streamlit reads `.streamlit/config.toml` from the working directory only, so the launcher passes
that file's settings (the localhost binding, XSRF protection, upload cap, no per-rerun garbage
collection) as command-line options, wherever it is started from. Extra arguments go to
Streamlit, after these, so they win: `speckle-vae-explorer --server.port 8600`.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"
# A checkout (or editable install) keeps the file beside app.py; a wheel installs it as data.
CONFIGS = (
    APP.parent / ".streamlit" / "config.toml",
    Path(sys.prefix) / "share" / "speckle-vae-explorer" / ".streamlit" / "config.toml",
)


def config_flags(path: Path) -> list[str]:
    """`--section.key=value` for every setting in a Streamlit config file."""
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    flags = []
    for section, values in doc.items():
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags.append(f"--{section}.{key}={text}")
    return flags


def command(argv: list[str]) -> list[str]:
    config = next((p for p in CONFIGS if p.is_file()), None)
    flags = config_flags(config) if config else []
    return ["streamlit", "run", str(APP), *flags, *argv]


def main(argv: list[str] | None = None) -> int:
    # `python -m streamlit`, Streamlit's public command line, in place of this process.
    os.execv(
        sys.executable, [sys.executable, "-m", *command(sys.argv[1:] if argv is None else argv)]
    )
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())

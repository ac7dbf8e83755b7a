"""Bytecode for the Lambda bundle, compiled ahead so cold starts do not compile every module.

Lambda's file system is read-only: without .pyc files in the bundle, every cold start compiles
every imported module (measured by `make bench`: ~1.3 s instead of ~0.4 s to a ready handler).
Bytecode is specific to a Python minor version, so it is compiled by an interpreter of the
runtime's version, with unchecked-hash invalidation (the asset zip does not keep the source
timestamps that the default mode checks; the bundle never changes after it is built).

Usage: python -m infra.bytecode DIR...
"""

from __future__ import annotations

import compileall
import py_compile
import sys
from pathlib import Path

LAMBDA_PYTHON = (3, 12)  # the Lambda runtime (infra/function.py) and Makefile's LAMBDA_PYTHON


def compile_for_lambda(path: Path) -> bool:
    """Compile the module at `path`, or every module below it; False (and a warning) if this Python cannot."""
    if sys.version_info[:2] != LAMBDA_PYTHON:
        running = ".".join(map(str, sys.version_info[:2]))
        wanted = ".".join(map(str, LAMBDA_PYTHON))
        print(
            f"warning: not compiling {path} to bytecode: this is Python {running}, the Lambda runtime "
            f"is {wanted}; the functions will work but compile every module on each cold start",
            file=sys.stderr,
        )
        return False
    if path.is_file():
        return bool(
            py_compile.compile(str(path), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        )
    return bool(
        compileall.compile_dir(
            str(path),
            quiet=1,
            workers=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    )


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        compile_for_lambda(Path(argument))

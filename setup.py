"""Build script: the list of Cython extensions, and nothing else.

Set ``VENUE_NO_EXTENSIONS=1`` to build without the compiled matching engine. The venue then
refuses to start unless ``--allow-reference-engine`` is given; see ``matching/__init__.py``.
"""

import os

from setuptools import setup

ext_modules = []
if os.environ.get("VENUE_NO_EXTENSIONS", "") not in ("1", "true", "yes"):
    from Cython.Build import cythonize
    from Cython.Compiler import Options
    from setuptools import Extension

    Options.warning_errors = True  # STYLE.md: Cython warnings are errors

    ext_modules = cythonize(
        [Extension("matching._book", ["matching/_book.pyx"], extra_compile_args=["-O3"])],
        compiler_directives={
            "language_level": "3",
            "embedsignature": True,
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "warn.unused": True,
            "warn.unused_arg": True,
            "warn.maybe_uninitialized": True,
        },
        annotate=bool(os.environ.get("VENUE_ANNOTATE")),
    )

setup(ext_modules=ext_modules)

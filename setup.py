"""Build the C extension ``pubsub._core`` from ``csrc/``.

Environment switches, read at build time:

  PUBSUB_DEBUG=1     -O0 -g3, assertions on
  PUBSUB_SANITIZE=x  add -fsanitize=x (for example "address,undefined")
"""
import glob
import os
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _check_headers(compiler):
    """Fail early, naming the missing header, instead of a wall of errors."""
    include_dirs = [sysconfig.get_paths()["include"], "/usr/include"]
    needed = {
        "Python.h": "the CPython headers (Debian: python3-dev)",
        "openssl/hmac.h": "OpenSSL's headers (Debian: libssl-dev)",
    }
    for header, where in needed.items():
        if not any(os.path.exists(os.path.join(d, header)) for d in include_dirs):
            sys.exit(f"cpubsub: cannot build: {header} not found; install {where}")


class BuildExt(build_ext):
    def build_extensions(self):
        _check_headers(self.compiler)
        super().build_extensions()


cflags = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Wno-missing-field-initializers", "-fvisibility=hidden",
          "-D_GNU_SOURCE"]
ldflags = []
if os.environ.get("PUBSUB_DEBUG"):
    cflags += ["-O0", "-g3", "-UNDEBUG"]
else:
    cflags += ["-O2", "-DNDEBUG"]
san = os.environ.get("PUBSUB_SANITIZE")
if san:
    cflags += [f"-fsanitize={san}", "-fno-omit-frame-pointer", "-g"]
    ldflags += [f"-fsanitize={san}"]

sources = sorted(glob.glob("csrc/core/*.c")) + sorted(glob.glob("csrc/py/*.c"))

setup(
    ext_modules=[
        Extension(
            "pubsub._core",
            sources=sources,
            include_dirs=["csrc/core", "csrc/py"],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            libraries=["crypto", "pthread"],
            depends=glob.glob("csrc/*/*.h"),
        )
    ],
    cmdclass={"build_ext": BuildExt},
)

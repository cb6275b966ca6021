"""IPython magics: thin wrappers, each one call into :func:`arcuate.execute`.

``%load_ext arcuate`` registers ``%%arcuate``/``%arcuate`` (any statements) and the seed's four
cell magics, which accept only their own kind of statement. Settings come, in this order, from
options on the magic's line (``%%arcuate --warehouse wh``), ``%config ArcuateMagics.<setting>``,
the environment and the defaults; ``%%arcuate --help`` lists the options. A SparkSession in the
notebook's ``spark`` variable (or the one ``--spark VAR`` names) is passed as ``spark=``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import shlex
from typing import Any, NoReturn

from IPython.core.magic import Magics, cell_magic, line_cell_magic, magics_class
from traitlets import Bool, Int, Unicode

import arcuate
from arcuate.backends.registry import available_backends
from arcuate.config import Settings, env_var
from arcuate.engine.result import Results
from arcuate.errors import ConfigurationError, PlanError

#: Help for the settings that take a value on the magic line; any other field of Settings
#: gets an option too (so a new setting is never missing from the magics).
_HELP: dict[str, tuple[str, str]] = {
    "tracking_uri": ("URI", "MLflow tracking URI"),
    "registry_uri": ("URI", "MLflow registry URI (default: the tracking URI)"),
    "warehouse": ("PATH", "where Delta tables are written"),
    "catalog": ("FILE", "share catalog file (default: <warehouse>/shares.yaml)"),
    "endpoint": ("URL", "sharing server URL written into recipients' profiles"),
    "table_backend": ("NAME", "the table backend"),
    "share_catalog": ("NAME", "the share catalog"),
    "chunk_bytes": ("BYTES", "files larger than this travel in chunks"),
    "import_path": ("PATH", "how an import writes new runs: auto, api or bulk"),
    "lock_wait": ("SECONDS", "how long an import waits for another import of its target"),
    "refuse_pickle": ("ON|OFF", "refuse shared tables holding pickle-family files"),
    "signing_key": ("PATH", "sign every exported table with this ECDSA private key"),
    "signing_certificate": ("PATH", "sign with this certificate of signing_key (PEM)"),
    "signing_certificate_chain": ("PATH", "the signing certificate's intermediates (PEM)"),
    "require_signature": ("ON|OFF", "refuse imports not verified with VERIFIED BY"),
    "rest_concurrency": ("N", "requests kept in flight at once to an MLflow server"),
}
#: Settings naming a backend: their help lists the names the registry knows.
_ROLES = {"table_backend": "table", "share_catalog": "catalog"}
#: Settings that are not a plain value on the line: ``spark`` is named by variable,
#: ``progress`` is a pair of flags, ``storage_options`` is a mapping; ``redaction_key`` is a
#: secret, which a magic line would keep in the notebook (ARCUATE_REDACTION_KEY instead).
_SPECIAL = ("spark", "progress", "storage_options", "redaction_key")

_EPILOG = """\
Options override %config ArcuateMagics.<setting> (for example
%config ArcuateMagics.warehouse = 'warehouse'), which overrides the environment.
AS SPARK (and the Spark table backend) use the SparkSession in the notebook variable
`spark` when there is one; --spark VAR names another variable."""


def value_settings() -> list[str]:
    """The settings given as ``--name VALUE`` on a magic line, in Settings order."""
    return [f.name for f in dataclasses.fields(Settings) if f.name not in _SPECIAL]


def option_names() -> list[str]:
    """Every option a magic line accepts."""
    names = ["--" + n.replace("_", "-") for n in value_settings()]
    return [*names, "--spark", "--progress", "--no-progress", "--help", "-h"]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        missing = re.match(r"argument (--[\w-]+).*: expected one argument", message)
        if missing:
            message = f"{missing.group(1)} needs a value"
        raise ConfigurationError(
            f"{message} on the {self.prog} line. {self.prog} --help lists the options."
        )


def _parser(prog: str, purpose: str, usage: str) -> _Parser:
    parser = _Parser(
        prog=prog,
        usage=usage,
        description=purpose,
        epilog=_EPILOG,
        add_help=False,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name in value_settings():
        metavar, text = _HELP.get(name, ("VALUE", f"the {name} setting"))
        if name in _ROLES:
            text += f": {', '.join(available_backends(_ROLES[name]))}"
        env = env_var(name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            metavar=metavar,
            help=f"{text} [env: {env}]" if env else text,
        )
    parser.add_argument(
        "--spark", metavar="VAR", help="the notebook variable holding a SparkSession [spark]"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="show progress bars [env: ARCUATE_PROGRESS; default: in a notebook or terminal]",
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help, run nothing")
    return parser


# A word of a magic line: runs of unquoted text and quoted strings ('' escapes a quote).
_WORD = re.compile(r"""(?:[^\s'"`]+|'(?:[^']|'')*'|"[^"]*"|`[^`]*`)+""")
_FLAGS = frozenset({"--help", "-h", "--progress", "--no-progress"})


def split_line(line: str) -> tuple[list[str], str]:
    """The leading options of a magic line (unquoted) and the text after them."""
    words: list[str] = []
    wants_value = False
    for match in _WORD.finditer(line):
        word = match.group()
        if not wants_value and not word.startswith("-"):
            return _unquote(words), line[match.start() :].strip()
        words.append(word)
        wants_value = not wants_value and "=" not in word and word not in _FLAGS
    return _unquote(words), ""


def _unquote(words: list[str]) -> list[str]:
    try:
        return [" ".join(shlex.split(w)) for w in words]
    except ValueError as exc:
        raise ConfigurationError(f"the options on the magic line: {exc}") from None


def _is_session(value: Any) -> bool:
    """A pyspark SparkSession, classic or Connect, without importing pyspark."""
    return any(c.__name__ == "SparkSession" for c in type(value).__mro__)


@magics_class
class ArcuateMagics(Magics):
    """The arcuate magics; the traits are settings passed to every statement."""

    tracking_uri = Unicode(None, allow_none=True, help="MLflow tracking URI").tag(config=True)
    registry_uri = Unicode(None, allow_none=True, help="MLflow registry URI").tag(config=True)
    warehouse = Unicode(None, allow_none=True, help="where Delta tables are written").tag(
        config=True
    )
    catalog = Unicode(None, allow_none=True, help="the local share catalog file").tag(config=True)
    endpoint = Unicode(None, allow_none=True, help="sharing server URL for profiles").tag(
        config=True
    )
    table_backend = Unicode(None, allow_none=True, help="the table backend").tag(config=True)
    share_catalog = Unicode(None, allow_none=True, help="the share catalog").tag(config=True)
    chunk_bytes = Int(None, allow_none=True, help="files above this size travel in chunks").tag(
        config=True
    )
    progress = Bool(None, allow_none=True, help="show progress bars (None: automatic)").tag(
        config=True
    )
    spark = Unicode("spark", help="the notebook variable that holds a SparkSession").tag(
        config=True
    )

    def _run(self, magic: str, line: str, text: str | None, expect: str | None) -> Results | None:
        """Parse the magic's line, then run ``text`` (or, for ``%arcuate``, the line's rest)."""
        words, rest = split_line(line)
        if text is None:
            text = rest
        elif rest:
            raise ConfigurationError(
                f"{magic} takes only options on its line; the statements go in the cell below "
                f"it (got {rest!r}). {magic} --help lists the options."
            )
        parser = self._parser(magic, expect)
        opts, unknown = parser.parse_known_args(words)
        if unknown:
            raise ConfigurationError(_unknown(magic, unknown[0]))
        if opts.help:
            print(parser.format_help())
            return None
        settings = self._settings(opts)
        session, looked = self._session(magic, opts.spark)
        try:
            return arcuate.execute(text, source="<cell>", expect=expect, spark=session, **settings)
        except PlanError as exc:
            if exc.code == "ARC202" and looked:  # say how to give a session here
                exc.hint = _spark_hint(magic, looked, exc.message)
            raise

    def _parser(self, magic: str, expect: str | None) -> _Parser:
        purpose = "Run arcuate statements." if expect is None else _PURPOSE[expect]
        cell = f"{magic.lstrip('%')} [options]\n  <statements, in the cell below>"
        line = f"%{magic.lstrip('%')} [options] <statements on the same line>"
        usage = "%%" + cell if magic.startswith("%%") else line
        if expect is None:  # %arcuate and %%arcuate: show both forms
            usage += "\n   or: " + (line if magic.startswith("%%") else "%%" + cell)
        return _parser(magic, purpose, usage.replace("%", "%%"))  # argparse %-formats usage

    def _settings(self, opts: argparse.Namespace) -> dict[str, Any]:
        """The line's options over the configured traits (the environment comes after both)."""
        names = [*value_settings(), "progress"]
        out = {n: getattr(self, n) for n in names if self.has_trait(n)}
        out = {n: v for n, v in out.items() if v is not None}
        out.update({n: getattr(opts, n) for n in names if getattr(opts, n) is not None})
        return out

    def _session(self, magic: str, name: str | None) -> tuple[Any, str]:
        """The notebook's SparkSession (or None), and what was looked for, for the hint."""
        ns = self.shell.user_ns if self.shell is not None else {}
        if name is not None:  # asked for by name: it must be there
            if name not in ns:
                raise ConfigurationError(f"--spark {name}: there is no notebook variable `{name}`")
            if not _is_session(ns[name]):
                raise ConfigurationError(
                    f"--spark {name}: the notebook variable `{name}` is a "
                    f"{type(ns[name]).__name__}, not a SparkSession"
                )
            return ns[name], ""
        var = self.spark
        if var not in ns:
            return None, f"there is no notebook variable `{var}`"
        if not _is_session(ns[var]):
            return None, (
                f"the notebook variable `{var}` is a {type(ns[var]).__name__}, not a SparkSession"
            )
        return ns[var], ""

    @line_cell_magic
    def arcuate(self, line: str, cell: str | None = None) -> Results | None:
        """Run any arcuate statements (the rest of the line, or the whole cell)."""
        magic = "%%arcuate" if cell is not None else "%arcuate"
        return self._run(magic, line, cell, None)

    @cell_magic
    def arcuate_export_experiment(self, line: str, cell: str) -> Results | None:
        """CREATE SHARE s WITH TABLE t FROM EXPERIMENT e"""
        return self._run("%%arcuate_export_experiment", line, cell, "export_experiment")

    @cell_magic
    def arcuate_export_model(self, line: str, cell: str) -> Results | None:
        """CREATE SHARE s WITH TABLE t FROM MODEL m"""
        return self._run("%%arcuate_export_model", line, cell, "export_model")

    @cell_magic
    def arcuate_import_experiment(self, line: str, cell: str) -> Results | None:
        """CREATE EXPERIMENT [OVERWRITE] e AS [PANDAS|SPARK] 'profile#share.schema.table'"""
        return self._run("%%arcuate_import_experiment", line, cell, "import_experiment")

    @cell_magic
    def arcuate_import_model(self, line: str, cell: str) -> Results | None:
        """CREATE MODEL [OVERWRITE] m AS [PANDAS|SPARK] 'profile#share.schema.table'"""
        return self._run("%%arcuate_import_model", line, cell, "import_model")


_PURPOSE = {
    "export_experiment": "Run CREATE SHARE s WITH TABLE t FROM EXPERIMENT e statements.",
    "export_model": "Run CREATE SHARE s WITH TABLE t FROM MODEL m statements.",
    "import_experiment": "Run CREATE EXPERIMENT e AS [PANDAS|SPARK] '<coordinate>' statements.",
    "import_model": "Run CREATE MODEL m AS [PANDAS|SPARK] '<coordinate>' statements.",
}


def _unknown(magic: str, word: str) -> str:
    option = word.split("=", 1)[0]
    near = difflib.get_close_matches(option, option_names(), n=1)
    maybe = f" Did you mean {near[0]}?" if near else ""
    return f"unknown option {option} on the {magic} line.{maybe} {magic} --help lists the options."


def _spark_hint(magic: str, looked: str, message: str) -> str:
    other = "use AS PANDAS" if "AS SPARK" in message else "use --share-catalog local"
    return (
        f"{looked}; create one (spark = SparkSession.builder.getOrCreate()), "
        f"or name yours with {magic} --spark VAR, or {other}"
    )


def register(ipython: Any) -> None:
    """Register the magics with an IPython shell."""
    ipython.register_magics(ArcuateMagics)

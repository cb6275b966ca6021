"""Plan operators: plain frozen data, one per step. The engine gives them meaning.

Operators are verb + object. Each says in ``describe()`` what it will do, for EXPLAIN.
A plan is a straight pipeline: each step receives the previous step's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from arcuate.format.access import rate_text
from arcuate.format.redaction import Rule

Flavor = Literal["pandas", "spark"]


@dataclass(frozen=True, slots=True)
class ExportExperiment:
    """Read an experiment's runs (filtered) from MLflow into a stream of table rows."""

    experiment: str
    filter: str | None = None
    #: the experiment's evaluation datasets (every record) and declarative scorers travel too
    datasets: bool = False
    scorers: bool = False
    #: the experiment's traces (those ``trace_filter``, MLflow's trace search syntax, selects)
    traces: bool = False
    trace_filter: str | None = None
    #: REDACT: what is dropped or hashed before rows are built (issue 16)
    redact: tuple[Rule, ...] = ()

    def describe(self) -> str:
        where = f" WHERE {self.filter}" if self.filter else ""
        text = f"read runs of experiment {self.experiment!r}{where} from MLflow"
        text += " (full history, files)"
        extra = []
        if self.datasets:
            extra.append("its evaluation datasets (every record)")
        if self.scorers:
            extra.append("its registered scorers (declarative ones; one with code is left out)")
        if self.traces:
            only = f" WHERE {self.trace_filter}" if self.trace_filter else ""
            extra.append(f"its traces{only} (spans, assessments; one without a root is left out)")
        return text + (", and " + " and ".join(extra) if extra else "") + _redacting(self.redact)


def _redacting(rules: tuple[Rule, ...]) -> str:
    """The redaction policy as EXPLAIN shows it (the rules, never the key)."""
    if not rules:
        return ""
    return "; before rows are built, REDACT " + ", ".join(r.describe() for r in rules)


def _which_versions(versions: tuple[int, ...], aliases: tuple[str, ...]) -> str:
    """The versions an export reads, as EXPLAIN says it."""
    if versions:
        return "versions " + ", ".join(map(str, versions))
    if aliases:
        return "versions with alias " + ", ".join(aliases)
    return "all versions"


@dataclass(frozen=True, slots=True)
class ExportModel:
    """Read a registered model's versions (all, or selected) from the MLflow registry."""

    model: str
    versions: tuple[int, ...] = ()
    aliases: tuple[str, ...] = ()
    #: REDACT: what is dropped or hashed before rows are built (issue 16)
    redact: tuple[Rule, ...] = ()

    def describe(self) -> str:
        which = _which_versions(self.versions, self.aliases)
        return (
            f"read {which} of registered model {self.model!r} from MLflow (files, source runs)"
            + _redacting(self.redact)
        )


@dataclass(frozen=True, slots=True)
class ExportPrompt:
    """Read a prompt's versions (all, or selected) from the MLflow registry."""

    prompt: str
    versions: tuple[int, ...] = ()
    aliases: tuple[str, ...] = ()

    def describe(self) -> str:
        which = _which_versions(self.versions, self.aliases)
        return f"read {which} of prompt {self.prompt!r} from MLflow (templates, tags, aliases)"


@dataclass(frozen=True, slots=True)
class WriteTable:
    """Write the rows to a Delta table in one atomic commit."""

    table: tuple[str, ...]
    content: Literal["experiment", "model", "prompt"]
    backend: str
    #: SIGNED BY (or the ``signing_key`` setting, applied when the step runs): the private key
    signing_key: str | None = None
    #: the name the signature binds the table to (``share.schema.table``)
    signed_as: str = ""
    #: SIGNED BY CERTIFICATE '<leaf>' KEY … CHAIN …: the certificate and its intermediates
    signing_certificate: str | None = None
    signing_chain: tuple[str, ...] = ()
    #: SIGNED BY SIGSTORE: keyless signing through Sigstore (needs a network)
    signing_sigstore: bool = False

    def _signer(self) -> str:
        """Who signs, as EXPLAIN says it: file names only, never their contents."""
        if self.signing_sigstore:
            return "with Sigstore keyless (an OIDC identity; needs the network)"
        if self.signing_certificate:
            chain = ", ".join(repr(c) for c in self.signing_chain)
            return f"by certificate {self.signing_certificate!r} with key {self.signing_key!r}" + (
                f" and chain {chain}" if chain else ""
            )
        return f"by key {self.signing_key!r}"

    def describe(self) -> str:
        signed = (
            f", signed {self._signer()} as {self.signed_as} (a signature row in the same commit)"
            if self.signing_key or self.signing_sigstore
            else ""
        )
        return (
            f"write Delta table {'.'.join(self.table)} with {self.backend} (one atomic commit)"
            f"{signed}"
        )


@dataclass(frozen=True, slots=True)
class AddToShare:
    """Add the written table to a share, creating the share if needed."""

    share: str
    schema: str
    table: str
    catalog: str
    if_not_exists: bool = False
    table_parts: tuple[str, ...] = ()

    def describe(self) -> str:
        where = f"{self.schema}.{self.table}"
        # A catalog that runs SQL adds its statements at the edge (explain's ``details``).
        return f"add table {where} to share {self.share!r} in the {self.catalog} catalog"


@dataclass(frozen=True, slots=True)
class ReadShare:
    """Read a shared table through the Delta Sharing protocol as record batches."""

    coordinate: str
    flavor: Flavor = "pandas"

    def describe(self) -> str:
        return f"read shared table {self.coordinate!r} as {self.flavor.upper()} (Delta Sharing)"


def _verified(key: str | None, ca: bool = False) -> str:
    """What EXPLAIN says of a VERIFIED BY clause."""
    if not key:
        return ""
    if ca:
        return (
            f", verifying the signature and its certificate chain to the CA {key!r}"
            " (before any write)"
        )
    return f", verifying the signature with {key!r} (before any write)"


@dataclass(frozen=True, slots=True)
class ImportExperiment:
    """Validate the shared runs, then create or update them in an experiment."""

    experiment: str
    coordinate: str
    overwrite: bool = False
    #: REFUSE PICKLE (or the ``refuse_pickle`` setting, applied when the step runs)
    refuse_pickle: bool = False
    #: VERIFIED BY: the provider's public key or certificate (``require_signature``: needed)
    verify_key: str | None = None
    #: VERIFIED BY CA: ``verify_key`` names the CA the signer's certificate chains to
    verify_ca: bool = False

    def describe(self) -> str:
        mode = (
            "replace its runs once the new ones are in place"
            if self.overwrite
            else "add or update runs"
        )
        policy = ", refusing pickle-family files" if self.refuse_pickle else ""
        policy += _verified(self.verify_key, self.verify_ca)
        return f"validate rows{policy}, then import into experiment {self.experiment!r} ({mode})"


@dataclass(frozen=True, slots=True)
class ImportModel:
    """Validate the shared versions, then register them under a model name."""

    model: str
    coordinate: str
    overwrite: bool = False
    #: REFUSE PICKLE (or the ``refuse_pickle`` setting, applied when the step runs)
    refuse_pickle: bool = False
    #: VERIFIED BY: the provider's public key or certificate (``require_signature``: needed)
    verify_key: str | None = None
    #: VERIFIED BY CA: ``verify_key`` names the CA the signer's certificate chains to
    verify_ca: bool = False

    def describe(self) -> str:
        mode = (
            "replace its versions once the new ones are in place"
            if self.overwrite
            else "add or update versions"
        )
        policy = ", refusing pickle-family files" if self.refuse_pickle else ""
        policy += _verified(self.verify_key, self.verify_ca)
        return f"validate rows{policy}, then import into registered model {self.model!r} ({mode})"


@dataclass(frozen=True, slots=True)
class ImportPrompt:
    """Validate the shared prompt versions, then create them in an MLflow prompt."""

    prompt: str
    coordinate: str
    overwrite: bool = False
    #: VERIFIED BY: the provider's public key or certificate (``require_signature``: needed)
    verify_key: str | None = None
    #: VERIFIED BY CA: ``verify_key`` names the CA the signer's certificate chains to
    verify_ca: bool = False

    def describe(self) -> str:
        mode = (
            "make its tags, aliases and versions the shared ones"
            if self.overwrite
            else "add new versions, set tags and aliases"
        )
        policy = _verified(self.verify_key, self.verify_ca)
        return f"validate rows{policy}, then import into prompt {self.prompt!r} ({mode})"


@dataclass(frozen=True, slots=True)
class DescribeShared:
    """Summarise a shared table without writing anything."""

    coordinate: str
    #: VERIFIED BY: say whether the signature verifies with this key
    verify_key: str | None = None
    #: VERIFIED BY CA: ``verify_key`` names the CA the signer's certificate chains to
    verify_ca: bool = False

    def describe(self) -> str:
        check = _verified(self.verify_key, self.verify_ca).replace(" (before any write)", "")
        return f"summarise shared table {self.coordinate!r}{check} (writes nothing)"


@dataclass(frozen=True, slots=True)
class ListProviderShares:
    """List what a profile file can read: shares, schemas, tables, each table's kind and rows."""

    profile: str

    def describe(self) -> str:
        return (
            f"list the shares, schemas and tables profile {self.profile!r} can read, with each "
            "table's kind and rows (Delta Sharing; writes nothing)"
        )


CatalogAction = Literal[
    "create_recipient",
    "rotate_token",
    "drop_recipient",
    "grant",
    "revoke",
    "remove_table",
    "drop_share",
    "show_shares",
    "show_recipients",
    "show_all_in_share",
    "describe_share",
    "describe_recipient",
    # access (issue 15)
    "set_ip_access_list",
    "unset_ip_access_list",
    "set_rate_limit",
    "unset_rate_limit",
    "show_access_log",
    "show_recipient_usage",
]


@dataclass(frozen=True, slots=True)
class CatalogCommand:
    """A change to, or a look at, the share catalog: recipients, grants, shares."""

    action: CatalogAction
    name: str | None = None
    share: str | None = None
    table: tuple[str, ...] = ()
    if_exists: bool = False
    comment: str | None = None
    expires_in_seconds: int | None = None
    profile_path: str | None = None
    show_token: bool = False
    catalog: str = "local"
    #: credentials (issue 15): an OAuth recipient and its access tokens' lifetime (None: the
    #: default); how long a replaced credential keeps working; an activation link instead of
    #: a profile file, valid this long (None: the default)
    oauth: bool = False
    access_token_seconds: int | None = None
    keep_old_seconds: int | None = None
    activation_link: bool = False
    link_seconds: int | None = None
    # -- access (issue 15) --
    #: SET IP ACCESS LIST: the checked entries, in canonical form (``10.0.0.0/8``).
    ip_access_list: tuple[str, ...] = ()
    #: SET RATE LIMIT: requests per this many seconds.
    rate_requests: int | None = None
    rate_per_seconds: int | None = None
    #: SHOW ACCESS LOG / SHOW RECIPIENT USAGE: from when (ISO-8601, UTC) and how many rows.
    since: str | None = None
    limit: int | None = None

    def describe(self) -> str:
        if self.action in ("show_access_log", "show_recipient_usage"):
            return f"{self._describe_access()} of the {self.catalog} share catalog"
        if self.action in _ACCESS_ACTIONS:
            return f"{self._describe_access()} in the {self.catalog} share catalog"
        n, sh, t = repr(self.name), repr(self.share), ".".join(self.table)
        text = {
            "create_recipient": f"create recipient {n} and its {self._credential()}",
            "rotate_token": f"replace the bearer token (or OAuth client secret) of recipient {n}",
            "drop_recipient": f"drop recipient {n} (its token stops working)",
            "grant": f"grant SELECT on share {sh} to recipient {n}",
            "revoke": f"revoke SELECT on share {sh} from recipient {n}",
            "remove_table": f"remove table {t} from share {sh}",
            "drop_share": f"drop share {sh}",
            "show_shares": "list shares",
            "show_recipients": "list recipients",
            "show_all_in_share": f"list the tables of share {sh}",
            "describe_share": f"describe share {sh}",
            "describe_recipient": f"describe recipient {n}",
        }[self.action]
        return f"{text} in the {self.catalog} share catalog{self._delivery()}"

    def _credential(self) -> str:
        if not self.oauth:
            return "bearer token"
        lasting = _length(self.access_token_seconds or 3600)
        return f"OAuth client secret (access tokens last {lasting})"

    def _describe_access(self) -> str:
        n = repr(self.name)
        if self.action == "set_ip_access_list":
            return f"let recipient {n} connect only from {', '.join(self.ip_access_list)}"
        if self.action == "unset_ip_access_list":
            return f"let recipient {n} connect from any address"
        if self.action == "set_rate_limit":
            limit = rate_text(self.rate_requests or 0, self.rate_per_seconds or 60)
            return f"limit recipient {n} to {limit}"
        if self.action == "unset_rate_limit":
            return f"remove the rate limit of recipient {n}"
        which = "".join(
            [
                f" of recipient {n}" if self.name else "",
                f" on share {self.share!r}" if self.share else "",
                f" since {self.since}" if self.since else "",
            ]
        )
        if self.action == "show_access_log":
            return f"read the newest {self.limit} requests{which} from the access log"
        return f"sum requests and bytes per recipient{which} from the access log"

    def _delivery(self) -> str:
        """Where a new token goes: the profile file, and the terminal with SHOW TOKEN; how
        long a replaced one keeps working."""
        if self.action not in ("create_recipient", "rotate_token"):
            return ""
        kept = ""
        if self.action == "rotate_token" and self.keep_old_seconds:
            kept = f"; the old one keeps working {_length(self.keep_old_seconds)}"
        elif self.action == "rotate_token":
            kept = "; the old one stops at once"
        if self.activation_link:
            valid = _length(self.link_seconds or 7 * 86400)
            return (
                f"{kept}; no profile file: return a one-time activation link (valid {valid}); "
                "the credential is made when it is used"
            )
        where = repr(self.profile_path) if self.profile_path else f"profiles/{self.name}.share"
        shown = "; print the profile on this terminal" if self.show_token else ""
        return f"{kept}; write the profile {where} (mode 0600){shown}"


def _length(seconds: int) -> str:
    """A length of time in the largest unit that divides it: ``600`` is ``10 minutes``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


_ACCESS_ACTIONS = frozenset(
    {
        "set_ip_access_list",
        "unset_ip_access_list",
        "set_rate_limit",
        "unset_rate_limit",
        "show_access_log",
        "show_recipient_usage",
    }
)


Operator = (
    ExportExperiment
    | ExportModel
    | ExportPrompt
    | WriteTable
    | AddToShare
    | ReadShare
    | ImportExperiment
    | ImportModel
    | ImportPrompt
    | DescribeShared
    | ListProviderShares
    | CatalogCommand
)
